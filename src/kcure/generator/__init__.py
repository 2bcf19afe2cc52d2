"""The synthetic population and its ten source feeds (`kcure generate`): landing-zone deliveries with a known truth."""
