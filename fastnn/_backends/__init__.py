"""fastnn's backends: one module each (cpp, numba, cupy), the same function names in
each. They receive validated, C-contiguous arrays and resolved specs from the prepared
calls (fastnn/_activation.py, _dense.py, _loss.py) and allocate their outputs as a user's
call would."""
