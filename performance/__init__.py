"""How sites performed against what they were told: compliance and curtailment (pure numpy, no I/O).

`timeline` holds the limits a site had in force; `compliance` compares measured power with them,
allowing the response time and ramp a CSIP-AUS device is given; `curtailment` estimates the energy an
envelope held back and settles it against a connection's curtailment guarantee.
"""
