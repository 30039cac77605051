"""AWS test doubles for luna-ha: what ``luna-ha demo``, ``luna-ha simulate --aws`` and the tests run
in place of AWS, kept out of the ``luna-ha`` distribution a member installs and of the Lambda.

- :mod:`luna_ha_lab.cfn_receiver`: CloudFormation's response endpoint, an HTTPS server on 127.0.0.1
  with a throwaway CA.
- :mod:`luna_ha_lab.cloudformation`: a local CloudFormation that sends real-shaped custom resource
  events to a Lambda handler and follows CloudFormation's choreography for them.
- :mod:`luna_ha_lab.localaws`: moto's server on 127.0.0.1 with a simulated group's secrets.

The ``luna-ha-lab`` distribution; ``pip install 'luna-ha[demo]'`` brings it.
"""
