"""CrossGuard policy pack for the platform; rules are plain functions (`policy.rules`)."""
