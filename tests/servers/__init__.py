"""Real authorization servers on loopback for the tests, and a browser-like consent walker."""
