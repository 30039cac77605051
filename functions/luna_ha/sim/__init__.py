"""A stateful Luna SA appliance simulator (paramiko SSH server) and local test doubles."""
