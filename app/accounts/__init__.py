"""Staff accounts: local users (argon2), directory users (LDAP / AD), roles, sign-in throttle.

API keys (app/services/keys.py) stay for machines and for bootstrapping an admin; people sign
in to the UI with an account whose role maps to the same scopes (roles.py).
"""
