"""The Pulumi program (pulumi-azure-native v3) that provisions one environment."""
