"""Position bias: a ranking records the order its candidates were shown in (RankingSubmitted
class_version 2), and rankings stored before that field existed read as "not recorded"."""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
from pathlib import Path
from uuid import uuid4

import pytest
from eventsourcing.persistence import JSONTranscoder, StoredEvent
from eventsourcing.utils import get_topic

from api.storage.codec import MsgspecMapper
from domain.model.errors import DomainError
from domain.model.errors import ErrorCode as E
from domain.model.states import TreeState as S
from domain.model.tree import ConversationTree as CT
from tests.conftest import names

FIXTURE = Path(__file__).parent / "fixtures" / "logs" / "v0-simulated.sqlite.gz"
TOPIC = "domain.tree:ConversationTree.RankingSubmitted"


def _rank(kit, t, order, display_order=None, **kwargs):
    """Rank on a copy of the tree; return the copy's new events."""
    tree = kit.tree(t)
    tree.submit_ranking(
        parent_id=t,
        ranked_message_ids=order,
        actor=kit.user(),
        config=kit.config,
        display_order=display_order,
        **kwargs,
    )
    return tree.collect_events()


def test_the_shown_order_is_recorded_with_the_ranking(kit):
    t, (a1, a2) = kit.ranking_tree()
    (ranked,) = _rank(kit, t, [a1, a2], display_order=[a2, a1])
    assert type(ranked) is CT.RankingSubmitted and CT.RankingSubmitted.class_version == 2
    assert ranked.ranked_message_ids == [a1, a2] and ranked.display_order == [a2, a1]


def test_no_shown_order_is_recorded_as_none(kit):
    t, (a1, a2) = kit.ranking_tree()
    (ranked,) = _rank(kit, t, [a2, a1])
    assert ranked.display_order is None


def test_the_last_ranking_still_scores_the_tree(kit):
    t, (a1, a2) = kit.ranking_tree()
    kit.rank(t, t, [a1, a2])
    kit.rank(t, t, [a1, a2])
    events = _rank(kit, t, [a2, a1], display_order=[a1, a2])
    assert names(events)[:2] == ["RankingSubmitted", "StateChanged"]
    assert "TreeScored" in names(events) and events[-1].to_state == S.READY_FOR_EXPORT


@pytest.mark.parametrize(
    "shown",
    [
        pytest.param(lambda a1, a2: [a1], id="missing"),
        pytest.param(lambda a1, a2: [a1, a2, a1], id="twice"),
        pytest.param(lambda a1, a2: [a1, uuid4()], id="foreign"),
        pytest.param(lambda a1, a2: [], id="empty"),
    ],
)
def test_a_shown_order_must_be_a_permutation_of_the_ranked_replies(kit, shown):
    t, (a1, a2) = kit.ranking_tree()
    tree = kit.tree(t)
    version = tree.version
    with pytest.raises(DomainError) as info:
        tree.submit_ranking(
            parent_id=t,
            ranked_message_ids=[a1, a2],
            actor=kit.user(),
            config=kit.config,
            display_order=shown(a1, a2),
        )
    assert info.value.error_code == E.INVALID_RANKING_VALUE
    assert "display_order" in str(info.value)
    assert tree.version == version and tree.collect_events() == []
    assert tree.messages[t].rankings == []


def _stored_rankings(tmp_path: Path) -> list[StoredEvent]:
    db = tmp_path / "events.sqlite"
    with gzip.open(FIXTURE) as src, open(db, "wb") as dst:
        shutil.copyfileobj(src, dst)
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT originator_id, originator_version, topic, state FROM stored_events "
            "WHERE topic = ?",
            (TOPIC,),
        ).fetchall()
    return [StoredEvent(*row) for row in rows]


@pytest.mark.skipif(not FIXTURE.exists(), reason="fixture log missing")
def test_rankings_stored_as_v1_upcast_to_no_shown_order(tmp_path):
    stored = _stored_rankings(tmp_path)
    assert stored, "the fixture log holds rankings"
    mapper = MsgspecMapper(transcoder=JSONTranscoder())
    for row in stored:
        raw = json.loads(row.state)
        assert "display_order" not in raw and "class_version" not in raw  # written as v1
        event = mapper.to_domain_event(row)
        assert type(event) is CT.RankingSubmitted and event.display_order is None
        assert event.ranked_message_ids and event.parent_id
        # Written again, it is a v2 event under the same topic that reads back the same.
        again = mapper.to_stored_event(event)
        assert again.topic == TOPIC == get_topic(CT.RankingSubmitted)
        rewritten = json.loads(again.state)
        assert rewritten["class_version"] == 2 and rewritten["display_order"] is None
        assert mapper.to_domain_event(again) == event


def test_upcaster_sets_the_new_field_only():
    state = {"parent_id": "p", "ranked_message_ids": [], "not_rankable": False}
    CT.RankingSubmitted.upcast_v1_v2(state)
    assert state == {
        "parent_id": "p",
        "ranked_message_ids": [],
        "not_rankable": False,
        "display_order": None,
    }
