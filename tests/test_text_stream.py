"""TextStream: incremental UTF-8 decoding and stop strings split across token pieces."""

from __future__ import annotations

import itertools

import pytest

from worker.text_stream import TextStream


def run(pieces: list[bytes], stop: list[str] | None = None) -> tuple[list[str], str, bool]:
    """Feed every piece; return the chunks emitted per feed, the whole text, and stopped."""
    stream = TextStream(stop or [])
    chunks: list[str] = []
    stopped = False
    for piece in pieces:
        text, stopped = stream.feed(piece)
        chunks.append(text)
        if stopped:
            break
    chunks.append(stream.flush())
    return chunks, "".join(chunks), stopped


def split_bytes(data: bytes, size: int) -> list[bytes]:
    return [data[i : i + size] for i in range(0, len(data), size)]


def test_plain_ascii_passes_through_at_once() -> None:
    chunks, text, stopped = run([b"Hello", b", ", b"world"])
    assert chunks == ["Hello", ", ", "world", ""]
    assert text == "Hello, world"
    assert not stopped


@pytest.mark.parametrize("size", [1, 2, 3, 5])
def test_multibyte_characters_split_across_pieces_are_held_until_complete(size: int) -> None:
    original = "naïve café → 日本語 🙂!"
    chunks, text, _ = run(split_bytes(original.encode(), size))
    assert text == original
    # No chunk ever carries a replacement character: partial bytes were held back.
    assert all("\ufffd" not in c for c in chunks)


def test_emoji_split_in_four_pieces_comes_out_in_one_chunk() -> None:
    emoji = "🙂".encode()
    stream = TextStream([])
    assert stream.feed(emoji[:1]) == ("", False)
    assert stream.feed(emoji[1:2]) == ("", False)
    assert stream.feed(emoji[2:3]) == ("", False)
    assert stream.feed(emoji[3:]) == ("🙂", False)


def test_truncated_character_at_the_end_becomes_a_replacement_on_flush() -> None:
    chunks, text, _ = run([b"ok ", "é".encode()[:1]])
    assert chunks[:2] == ["ok ", ""]
    assert text == "ok \ufffd"


def test_invalid_bytes_in_the_middle_are_replaced_not_fatal() -> None:
    _, text, _ = run([b"a\xffb", b"c"])
    assert text == "a\ufffdbc"


def test_stop_string_in_one_piece_cuts_it_and_everything_after() -> None:
    _, text, stopped = run([b"Hello ", b"world. STOP here", b"never"], stop=["STOP"])
    assert stopped
    assert text == "Hello world. "
    assert "never" not in text


def test_stop_string_split_across_pieces_is_never_emitted() -> None:
    chunks, text, stopped = run([b"The end", b"<|", b"eo", b"t|>", b" more"], stop=["<|eot|>"])
    assert stopped
    assert text == "The end"
    assert all("<|" not in c for c in chunks)


@pytest.mark.parametrize("size", [1, 2, 3, 4, 7])
def test_stop_string_found_whatever_the_split(size: int) -> None:
    source = "one two ### three"
    _, text, stopped = run(split_bytes(source.encode(), size), stop=["###"])
    assert stopped
    assert text == "one two "


def test_stop_at_the_very_start_emits_nothing() -> None:
    chunks, text, stopped = run([b"\n\n", b"User:"], stop=["\n\n"])
    assert stopped
    assert text == ""
    assert chunks == ["", ""]


def test_held_prefix_that_does_not_become_a_stop_is_released() -> None:
    stream = TextStream(["STOP"])
    assert stream.feed(b"a ST") == ("a ", False)  # "ST" might begin "STOP"
    assert stream.feed(b"ART") == ("START", False)  # it did not
    assert stream.feed(b" ST") == (" ", False)
    assert stream.flush() == "ST"  # generation ended: the held text was just text


def test_overlapping_stop_prefixes_hold_the_longest_candidate() -> None:
    # "aab" ends in "aa" and in "a": both could start "aaX"; the stream must hold "aa".
    stream = TextStream(["aaX"])
    assert stream.feed(b"baa") == ("b", False)
    assert stream.feed(b"a") == ("a", False)  # "aaa": the first "a" can no longer start "aaX"
    assert stream.feed(b"X") == ("", True)


def test_repeated_self_overlapping_stop_is_found() -> None:
    _, text, stopped = run([b"x", b"ab", b"a", b"ba", b"b", b"c"], stop=["abab"])
    assert stopped
    assert text == "x"


def test_several_stops_the_earliest_match_wins() -> None:
    _, text, stopped = run([b"alpha beta gamma"], stop=["gamma", "beta"])
    assert stopped
    assert text == "alpha "


def test_several_stops_split_across_pieces() -> None:
    _, text, stopped = run([b"x = 1", b"\n", b"`", b"``", b" y"], stop=["\n\n", "```", "END"])
    assert stopped
    assert text == "x = 1\n"


def test_one_stop_being_a_prefix_of_another_stops_at_the_shorter() -> None:
    _, text, stopped = run([b"hi <", b"end", b">"], stop=["<end>", "<"])
    assert stopped
    assert text == "hi "


def test_stop_string_made_of_multibyte_characters_split_mid_character() -> None:
    data = "答案是。停止了".encode()
    _, text, stopped = run(split_bytes(data, 1), stop=["停止"])
    assert stopped
    assert text == "答案是。"


def test_feed_after_stop_emits_nothing() -> None:
    stream = TextStream(["!"])
    assert stream.feed(b"hey!") == ("hey", True)
    assert stream.feed(b"more") == ("", True)
    assert stream.flush() == ""
    assert stream.stopped


def test_empty_stop_strings_are_ignored() -> None:
    _, text, stopped = run([b"abc"], stop=[""])
    assert text == "abc"
    assert not stopped


def test_no_text_is_lost_or_duplicated_for_every_split() -> None:
    # Exhaustive over every way to cut a short string in three: emitted == text before stop.
    source = "ab<s>é</s>cd".encode()
    for i, j in itertools.combinations(range(1, len(source)), 2):
        pieces = [source[:i], source[i:j], source[j:]]
        _, text, stopped = run(pieces, stop=["</s>"])
        assert stopped
        assert text == "ab<s>é", (i, j)
