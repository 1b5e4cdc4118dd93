"""Tenants: one supervisor per tenant over its intent actors and its audit
chain; one owner process per tenant, which keeps its limits (the desk)."""

from exoarmur.actors.tenants.desk import ADMISSION_CHAIN, ADMISSION_EVENT, TenantDesk
from exoarmur.actors.tenants.limits import Admission, TenantLimits, TokenBucket
from exoarmur.actors.tenants.router import TenantRouter, tenant_spec, tenants_spec

__all__ = ["ADMISSION_CHAIN", "ADMISSION_EVENT", "Admission", "TenantDesk", "TenantLimits", "TenantRouter", "TokenBucket", "tenant_spec", "tenants_spec"]
