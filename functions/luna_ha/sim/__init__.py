"""A stateful Luna SA appliance simulator (paramiko SSH server) and simulated Luna client tools.

The local AWS doubles (CloudFormation, its response receiver, moto) are not here but in the
``luna-ha-lab`` distribution, :mod:`luna_ha_lab`, which the ``demo`` extra brings.
"""
