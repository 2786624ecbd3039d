"""Importance Explorer's core library (no Streamlit anywhere in it).

OpenMP threads wait passively: on a small, shared machine the default active wait spins idle pool threads
(torch's, numba's) for a while after each parallel region, and they steal the cores from the work that
follows. Measured here on 2 cores: a 16-image forward of the Shapes ViT after a parallel numba kernel took
160-800 ms with spinning threads and 26 ms without; extracting 2,000 images took 13.3 s instead of 6.8 s.
It must be set before the OpenMP runtime loads (before torch or numba are imported), hence here.
"""
import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
