"""Tenants: one supervisor per tenant over its intent actors and its audit chain."""

from exoarmur.actors.tenants.router import TenantRouter, tenant_spec, tenants_spec

__all__ = ["TenantRouter", "tenant_spec", "tenants_spec"]
