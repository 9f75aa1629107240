"""Every browser message a widget can receive (``set_state`` on each synced scalar/list trait)
with bad values: refused as a ``TraitError`` with the previous state kept, or accepted — never
another exception (session 24's fuzz, kept as a test; it found the non-rollback and bool bugs)."""

import numpy as np
import pytest
import traitlets

from fcinv_testing.fakes import FakeDecoder, FakeMaterial, fake_latent_map, fake_noise_grid, fake_scan_inference, make_fake_grid

BAD = [float("nan"), float("inf"), -1, 10**9, 1.5, True, "abc", None, [], [1, 2], [10**9], ["a"], [[1, 2]], {"a": 1}]


def _widgets():
    from fcinv_widgets.widgets import FCExplorer, LatentPicker, NoiseGridExplorer, OrientationScatter

    grid = make_fake_grid(30, 24)
    return {
        "FCExplorer": FCExplorer(FakeMaterial()),
        "NoiseGridExplorer": NoiseGridExplorer(fake_noise_grid()),
        "OrientationScatter": OrientationScatter(
            fake_scan_inference(n=12, grid=grid), forward_model=FakeMaterial(grid=grid).forward_model()
        ),
        "LatentPicker": LatentPicker(fake_latent_map(n=60, latent=6), decoder=FakeDecoder()),
    }


def _browser_traits(view):
    """Synced traits a message could set: scalars and lists (arrays are binary buffers the views send back never)."""
    kinds = (traitlets.Int, traitlets.Float, traitlets.Unicode, traitlets.Bool, traitlets.List)
    own = set(view.traits(sync=True)) - set(traitlets.HasTraits.class_traits()) - {"_esm", "_css", "_anywidget_id"}
    return sorted(n for n in own if isinstance(view.traits()[n], kinds) and not n.startswith("_"))


@pytest.mark.parametrize("name", ["FCExplorer", "NoiseGridExplorer", "OrientationScatter", "LatentPicker"])
def test_bad_browser_messages_are_refused_and_rolled_back(name):
    w = _widgets()[name]
    view = w.widget
    traits = _browser_traits(view)
    assert traits, "no synced traits found"
    problems = []
    for trait in traits:
        for value in BAD:
            before = view.get_state(trait)
            try:
                view.set_state({trait: value})
            except traitlets.TraitError:
                if view.get_state(trait) != before:
                    problems.append(f"{trait}={value!r}: refused but not rolled back")
                continue
            except Exception as exc:  # noqa: BLE001 — what this test looks for
                problems.append(f"{trait}={value!r}: {type(exc).__name__}: {exc}"[:200])
                continue
            try:  # accepted: put it back for the next case
                view.set_state(before)
            except Exception as exc:  # noqa: BLE001
                problems.append(f"{trait}={value!r}: accepted, then the previous state was refused: {exc}"[:200])
    assert not problems, "\n".join(problems)
    assert np.isfinite(np.asarray(getattr(w, "theta", [0.0]), float)).all()
