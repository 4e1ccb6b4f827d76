"""One driver script per client (ours, the bare floor client and the peers).

Drivers run as subprocesses, each in its own environment (``python peers/<driver>.py '<spec>'``),
import only ``_common`` (standard library) and their client, and print ``RESULT <json>``.
"""
