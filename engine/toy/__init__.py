"""Toy models of superposition (Elhage et al. 2022): n sparse features in m < n hidden dimensions,
trained many at once on the CPU (``model``), the paper's measures (``measures``), its phase diagram
for one extra feature (``phase``), and an SAE trained on the hidden layer, matched against the true
feature directions (``dictionary``). Qt-free; the app's Toy Models window drives these jobs."""
