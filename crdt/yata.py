"""Where an item of a Yjs text goes: a port of the part of Yjs that links
a text's items in document order (``Item.integrate`` and its YATA conflict
rule, ``splitItem``) and of how an item finds its parent.

:class:`ItemSequence` holds the items of one root text as a linked list and,
for every client, its integrated items by clock. :mod:`crdt.timeline` feeds
it the items in a causal order and reads the result.

Rules kept here:

* An item is integrated only once its origins are in the sequence:
  :meth:`ItemSequence.integrate` raises KeyError, changing nothing, when one
  is missing (it was collected); the caller decides what that means.
* The conflict rule is the YATA rule of Yjs (which Yrs shares), ported as
  it stands: where several items were typed at one place concurrently, this
  gives the order every replica gives.
* A client's items are integrated in clock order; anything else is our bug
  (LocalProtocolError).
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterator

from crdt import ystructs
from crdt.errors import LocalProtocolError
from crdt.ystructs import Id, Struct


class Item:
    """A run of one client's content with consecutive clocks, and its place:
    its origins and, once integrated, its neighbours."""

    __slots__ = ("client", "clock", "left", "length", "origin", "right", "right_origin", "shows", "text")

    def __init__(self, s: Struct) -> None:
        self.client = s.client
        self.clock = s.clock
        self.length = s.length
        self.origin = s.origin
        self.right_origin = s.right
        self.left: Item | None = None
        self.right: Item | None = None
        self.text = s.text
        self.shows = s.kind in (ystructs.STRING, ystructs.EMBED)  # what str(text) would show, when not deleted

    def split(self, diff: int) -> Item:
        """Split after *diff* clocks, as Yjs's splitItem: this object keeps
        the left part; the right part is returned, linked after it."""
        right = Item.__new__(Item)
        right.client = self.client
        right.clock = self.clock + diff
        right.length = self.length - diff
        right.origin = (self.client, self.clock + diff - 1)
        right.right_origin = self.right_origin
        right.shows = self.shows
        right.text = None
        if self.text is not None:
            right.text = ystructs.utf16_slice(self.text, diff, self.length)
            self.text = ystructs.utf16_slice(self.text, 0, diff)
        self.length = diff
        right.left = self
        right.right = self.right
        if self.right is not None:
            self.right.left = right
        self.right = right
        return right


class ItemSequence:
    """The items of one root text, linked in document order, and every
    client's integrated items by clock."""

    def __init__(self) -> None:
        self.start: Item | None = None
        self.items: dict[int, list[Item]] = {}
        self.clocks: dict[int, list[int]] = {}

    def find(self, id_: Id) -> Item:
        client, clock = id_
        clocks = self.clocks.get(client)
        if not clocks:
            raise KeyError(id_)
        i = bisect_right(clocks, clock) - 1
        if i < 0:
            raise KeyError(id_)
        item = self.items[client][i]
        if not item.clock <= clock < item.clock + item.length:
            raise KeyError(id_)
        return item

    def _split(self, item: Item, diff: int) -> Item:
        right = item.split(diff)
        items, clocks = self.items[item.client], self.clocks[item.client]
        i = bisect_right(clocks, item.clock)
        items.insert(i, right)
        clocks.insert(i, right.clock)
        return right

    def clean_end(self, id_: Id) -> Item:
        item = self.find(id_)
        if id_[1] != item.clock + item.length - 1:
            self._split(item, id_[1] - item.clock + 1)
        return item

    def clean_start(self, id_: Id) -> Item:
        item = self.find(id_)
        if id_[1] != item.clock:
            return self._split(item, id_[1] - item.clock)
        return item

    def add(self, item: Item) -> None:
        items = self.items.setdefault(item.client, [])
        clocks = self.clocks.setdefault(item.client, [])
        if clocks and clocks[-1] > item.clock:
            raise LocalProtocolError("items of a client integrated out of clock order")
        items.append(item)
        clocks.append(item.clock)

    def integrate(self, item: Item) -> None:
        """Yjs's ``Item.integrate`` for an item whose origins were handled.
        Raises KeyError, changing nothing, if an origin is not in this
        sequence (it was collected)."""
        if item.origin is not None:
            self.find(item.origin)
        if item.right_origin is not None:
            self.find(item.right_origin)
        left = self.clean_end(item.origin) if item.origin is not None else None
        right = self.clean_start(item.right_origin) if item.right_origin is not None else None
        if (
            (left is None and right is None)
            or (left is not None and left.right is not right)
            or (left is None and self.start is not right)
        ):
            o = left.right if left is not None else self.start
            conflicting: set[int] = set()
            before_origin: set[int] = set()
            while o is not None and o is not right:
                before_origin.add(id(o))
                conflicting.add(id(o))
                if o.origin == item.origin:
                    if o.client < item.client:
                        left = o
                        conflicting.clear()
                    elif o.right_origin == item.right_origin:
                        break
                elif o.origin is not None and id(self.find(o.origin)) in before_origin:
                    if id(self.find(o.origin)) not in conflicting:
                        left = o
                        conflicting.clear()
                else:
                    break
                o = o.right
        item.left = left
        if left is not None:
            item.right = left.right
            left.right = item
        else:
            item.right = self.start
            self.start = item
        if item.right is not None:
            item.right.left = item
        self.add(item)


def parents_of(clients: dict[int, list[Struct]]) -> dict[tuple[int, int], str | Id | None]:
    """Every item's parent (a root name or an item id), following origins
    where the encoding leaves it out. None: the item hangs off collected
    content (Yjs then collects it too)."""
    starts = {client: [s.clock for s in structs] for client, structs in clients.items()}
    memo: dict[tuple[int, int], str | Id | None] = {}

    def struct_at(id_: Id) -> Struct | None:
        structs = clients.get(id_[0])
        if not structs:
            return None
        i = bisect_right(starts[id_[0]], id_[1]) - 1
        if i < 0 or not structs[i].clock <= id_[1] < structs[i].clock + structs[i].length:
            return None
        return structs[i]

    for structs in clients.values():
        for s in structs:
            if not s.is_item or (s.client, s.clock) in memo:
                continue
            path: list[Struct] = []
            node: Struct | None = s
            found: str | Id | None = None
            while node is not None:
                key = (node.client, node.clock)
                if key in memo:
                    found = memo[key]
                    break
                path.append(node)
                if node.parent is not None:
                    found = node.parent
                    break
                ref = node.origin or node.right
                nxt = struct_at(ref) if ref is not None else None
                if nxt is None or not nxt.is_item:
                    found = None  # its neighbour was collected
                    break
                node = nxt
            for p in path:
                memo[(p.client, p.clock)] = found
    return memo


def walk(item: Item | None) -> Iterator[Item]:
    """*item* and every item linked after it, in document order."""
    while item is not None:
        yield item
        item = item.right
