"""The synthetic-media faces need only runtime dependencies: the second photo is shipped with the package, and it is
scikit-image's astronaut pixel for pixel (so every figure measured on it before still holds)."""

import numpy as np


def test_shipped_astronaut_is_scikit_images():
    from skimage import data

    from synclora.testing.faces import _still

    np.testing.assert_array_equal(_still("astronaut"), data.astronaut()[..., :3])


def test_faces_module_imports_no_test_only_package():
    import subprocess
    import sys

    code = ("import sys; sys.modules['skimage'] = None; from synclora.testing import faces; "
            "assert faces._still('astronaut').shape == (512, 512, 3)")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
