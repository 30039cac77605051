"""ASG-member bootstrap: reads SSM, configures the Luna client, builds the HA group. No paramiko."""
