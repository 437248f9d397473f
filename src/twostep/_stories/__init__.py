"""The user stories of the rules, one module per section of the spec, behind ``TwoStep``.

- :mod:`.login`: logging in (R1-R6), sessions and logout;
- :mod:`.own_two_factor`: one's own 2FA (R5, R10, R11, R30-R32, R40);
- :mod:`.administration`: the account's requirement, owners' resets, the overview and
  the audit trail (R20-R22, R41, R42, R50, R60), accounts and users;
- :mod:`.maintenance`: purging what expired, resealing secrets under a new key.
"""
