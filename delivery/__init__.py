"""Model delivery: package models and environments, roll deployments out blue/green, promote."""
