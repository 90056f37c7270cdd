"""Composable graphs: the tensor types on their ports (types), the built-in op library (ops),
the spec reader (spec) and the validator (validate), which every other layer goes by."""
