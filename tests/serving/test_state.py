"""Start-up checks of the app state that need no registry or feature store."""

from __future__ import annotations

import pytest

from serving.state import check_vocabulary


def test_the_snapshots_vocabulary_must_be_the_apis(world):
    check_vocabulary(world.tags)  # the tags of a run with this configuration pass
    renamed = world.tags.assign(value_tier=world.tags["value_tier"].replace("gold", "oro"))
    with pytest.raises(ValueError, match=r"value_tier values \['oro'\].*rerun `memberwise run`"):
        check_vocabulary(renamed)
    odd = world.tags.assign(tags="dormant,vip")
    with pytest.raises(ValueError, match=r"tags values \['vip'\]"):
        check_vocabulary(odd)
