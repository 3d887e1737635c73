"""Pure image kernels by family; op classes in ``transforms`` call these with sampled params."""
