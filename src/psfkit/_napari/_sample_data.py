"""Sample data for napari's File > Open Sample menu, each layer carrying its truth in
``metadata`` so a newcomer can check every widget against a known answer."""

from __future__ import annotations


def blurred_pair():
    from psfkit.samples import sample_pair

    data = sample_pair()
    truth = data["truth"]
    return [
        (data["sharp"], {"name": "sharp", "metadata": {"truth": truth}}, "image"),
        (data["blurred"], {"name": "blurred", "metadata": {"truth": truth}}, "image"),
        (truth["kernel"], {"name": "true kernel", "metadata": {"truth": truth}}, "image"),
    ]


def beads():
    from psfkit.samples import sample_beads

    beads = sample_beads()
    return [(beads["image"], {"name": "beads", "metadata": {"truth": beads["truth"]}},
             "image")]


def led_photo():
    from psfkit.samples import sample_point_source

    led = sample_point_source()
    return [(led["image"], {"name": "LED", "metadata": {"truth": led["truth"]}}, "image")]


def blurred_image():
    from psfkit.samples import sample_blurred_image

    data = sample_blurred_image()
    return [
        (data["blurred"], {"name": "blurred cells", "metadata": {"truth": data["truth"]}},
         "image"),
        (data["psf"], {"name": "psf"}, "image"),
    ]


def blurred_volume():
    from psfkit.samples import sample_blurred_volume

    data = sample_blurred_volume()
    scale = data["spacing"]
    return [
        (data["blurred"], {"name": "blurred volume", "scale": scale,
                           "metadata": {"truth": data["truth"]}}, "image"),
        (data["psf"], {"name": "volume psf", "scale": scale}, "image"),
    ]
