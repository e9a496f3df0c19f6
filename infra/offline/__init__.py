"""Offline plans: the Pulumi program under mocks (`mocks`), run by a harness (`harness`) and
shown (`render`); `infra.plan` is the command line and the entry point other code uses."""
