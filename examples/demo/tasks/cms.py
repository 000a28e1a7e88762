"""The example CMS step: writes the campaign's banner file (or fails on demand)."""

import os


def update_banners(campaign: int, fail: bool = False) -> str:
    if fail:
        raise RuntimeError(f"the CMS refused the banners of campaign {campaign}")
    os.makedirs("out", exist_ok=True)
    path = f"out/banners_{campaign}.txt"
    with open(path, "w") as fh:
        fh.write(f"banners of campaign {campaign}\n")
    print(f"banners updated for campaign {campaign}")
    return path
