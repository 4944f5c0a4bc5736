"""fastnn's backends: one module each (cpp, numba, cupy), the same function names in
each. They receive validated, C-contiguous arrays and canonical specs from
fastnn._kernels and allocate their outputs as a user's call would."""
