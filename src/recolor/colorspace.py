"""The numbers of sRGB and CIE Lab that every part shares: primaries, white point, Lab's constants and
the scales of the networks' tensors. No torch: apply's CPU path and the engines import this alone.
"""

# sRGB (IEC 61966-2-1) primaries to CIE XYZ, D65 white, the matrix scikit-image uses.
RGB_TO_XYZ = (
    (0.412453, 0.357580, 0.180423),
    (0.212671, 0.715160, 0.072169),
    (0.019334, 0.119193, 0.950227),
)
# D65 reference white (2 degree observer), as in scikit-image.
D65_WHITE = (0.95047, 1.0, 1.08883)

LAB_EPSILON = 216 / 24389  # (6/29)^3: where Lab's cube root meets its linear segment
LAB_KAPPA = 24389 / 27  # the slope of that linear segment: L = LAB_KAPPA * Y below LAB_EPSILON

L_MAX = 100.0
# ab span used to normalise the network's output: ab / AB_SCALE in [-1, 1]. sRGB colors reach
# about a in [-86, 98], b in [-108, 95], so 110 covers the gamut with a little headroom.
AB_SCALE = 110.0
