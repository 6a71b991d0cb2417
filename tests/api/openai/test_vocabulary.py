"""The rest of OpenAI's request vocabulary through the real openai SDK against a real server on the embedded
model: log probabilities (chat and completions, whole and streamed), echo and prompt scoring, several
prompts and token-id prompts, n, penalties, logit_bias, min_p and a message's name."""

from __future__ import annotations

import math
from typing import Any

import httpx
import openai
import pytest

from tests.api.openai.conftest import MODEL, QUESTION

pytestmark = pytest.mark.model

FRANCE = "The capital of France is"
GREEDY: dict[str, Any] = {"model": MODEL, "temperature": 0}


def tokens_of(http: httpx.Client, text: str) -> list[int]:
    response = http.post("/api/tokenize", json={"text": text})
    assert response.status_code == 200, response.text
    return list(response.json()["tokens"])


def test_chat_logprobs_name_each_answer_token_and_a_greedy_token_is_its_own_top_one(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(
        messages=QUESTION, max_tokens=8, logprobs=True, top_logprobs=3, **GREEDY
    ).choices[0]
    assert answer.logprobs is not None and answer.logprobs.content is not None
    entries = answer.logprobs.content
    assert entries
    assert "".join(entry.token for entry in entries) == answer.message.content
    for entry in entries:
        assert entry.logprob <= 0 and bytes(entry.bytes or []).decode() == entry.token
        assert len(entry.top_logprobs) == 3
        alternatives = [top.logprob for top in entry.top_logprobs]
        assert alternatives == sorted(alternatives, reverse=True), alternatives
        assert entry.top_logprobs[0].token == entry.token  # greedy: the token drawn is the most likely one
        assert math.isclose(entry.top_logprobs[0].logprob, entry.logprob, abs_tol=1e-5)


def test_chat_without_logprobs_has_none(client: openai.OpenAI) -> None:
    answer = client.chat.completions.create(messages=QUESTION, max_tokens=4, **GREEDY).choices[0]
    assert answer.logprobs is None


def test_streamed_chat_logprobs_cover_the_streamed_text(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        messages=QUESTION, max_tokens=8, logprobs=True, top_logprobs=1, stream=True, **GREEDY
    )
    text, tokens = "", []
    for chunk in stream:
        for choice in chunk.choices:
            text += choice.delta.content or ""
            if choice.logprobs is not None and choice.logprobs.content:
                tokens += [entry.token for entry in choice.logprobs.content]
    whole = client.chat.completions.create(messages=QUESTION, max_tokens=8, **GREEDY).choices[0].message.content
    assert text == whole and "".join(tokens) == text, (text, tokens)


def test_completion_logprobs_lists_are_parallel_and_offsets_point_into_the_text(client: openai.OpenAI) -> None:
    choice = client.completions.create(prompt=FRANCE, max_tokens=6, logprobs=2, **GREEDY).choices[0]
    logprobs = choice.logprobs
    assert logprobs is not None and logprobs.tokens and logprobs.token_logprobs and logprobs.top_logprobs
    assert logprobs.text_offset is not None
    assert len(logprobs.tokens) == len(logprobs.token_logprobs) == len(logprobs.top_logprobs) == 6
    assert "".join(logprobs.tokens) == choice.text
    for token, offset in zip(logprobs.tokens, logprobs.text_offset, strict=True):
        assert choice.text[offset : offset + len(token)] == token
    for token, logprob, top in zip(logprobs.tokens, logprobs.token_logprobs, logprobs.top_logprobs, strict=True):
        assert logprob is not None and top is not None
        assert max(top, key=lambda key: top[key]) == token  # greedy: the token is the most likely one
        assert len(top) == 2


def continuation_logprob(client: openai.OpenAI, context: str, continuation: str) -> float:
    """How evaluation harnesses score a choice: the prompt echoed with its log probabilities, nothing generated,
    the continuation's tokens summed."""
    choice = client.completions.create(prompt=context + continuation, max_tokens=0, echo=True, logprobs=0, **GREEDY)
    logprobs = choice.choices[0].logprobs
    assert choice.choices[0].text == context + continuation
    assert logprobs is not None and logprobs.token_logprobs and logprobs.text_offset and logprobs.tokens
    assert logprobs.token_logprobs[0] is None  # nothing precedes the first token
    assert choice.usage is not None and choice.usage.completion_tokens == 0
    start = len(context)
    picked = [
        logprob
        for offset, logprob in zip(logprobs.text_offset, logprobs.token_logprobs, strict=True)
        if offset >= start
    ]
    assert picked and all(logprob is not None for logprob in picked)
    return sum(logprob for logprob in picked if logprob is not None)


def test_echo_scores_a_true_continuation_above_a_false_one(client: openai.OpenAI) -> None:
    true = continuation_logprob(client, FRANCE, " Paris")
    false = continuation_logprob(client, FRANCE, " Berlin")
    assert true > false, (true, false)


def test_echo_without_logprobs_puts_the_prompt_before_the_answer(client: openai.OpenAI) -> None:
    plain = client.completions.create(prompt=FRANCE, max_tokens=4, **GREEDY).choices[0]
    echoed = client.completions.create(prompt=FRANCE, max_tokens=4, echo=True, **GREEDY).choices[0]
    assert echoed.text == FRANCE + plain.text and echoed.logprobs is None


def test_streamed_echo_starts_with_the_prompt_and_its_scores(client: openai.OpenAI) -> None:
    chunks = list(client.completions.create(prompt=FRANCE, max_tokens=3, echo=True, logprobs=1, stream=True, **GREEDY))
    first = chunks[0].choices[0]
    assert first.text == FRANCE and first.logprobs is not None and first.logprobs.token_logprobs
    assert first.logprobs.token_logprobs[0] is None
    text = "".join(choice.text for chunk in chunks for choice in chunk.choices)
    whole = client.completions.create(prompt=FRANCE, max_tokens=3, echo=True, **GREEDY).choices[0].text
    assert text == whole


NEAR_TIE_NATS = 0.5


def assert_same_greedy_path(together: Any, alone: Any) -> None:
    """Two greedy runs of one prompt agree token by token, or part where the run alone had a near-tie: with the
    shared KV pool a prompt's scores depend slightly on its batch neighbours and cell placement (docs/cpu.md), so
    only a choice between two almost equally likely tokens may turn."""
    ours, theirs = together.logprobs, alone.logprobs
    for index, (token, same) in enumerate(zip(ours.tokens, theirs.tokens, strict=False)):
        if token != same:
            top = theirs.top_logprobs[index]
            assert token in top, (index, token, top, together.text, alone.text)
            gap = abs(top[same] - top[token])
            assert gap < NEAR_TIE_NATS, (index, token, same, gap, together.text, alone.text)
            return
    assert together.text == alone.text


def test_several_prompts_are_several_choices_each_as_if_alone(client: openai.OpenAI) -> None:
    prompts = [FRANCE, "Once upon a time"]
    both = client.completions.create(prompt=prompts, max_tokens=5, logprobs=2, **GREEDY)
    alone = [client.completions.create(prompt=p, max_tokens=5, logprobs=2, **GREEDY) for p in prompts]
    assert [c.index for c in both.choices] == [0, 1]
    for together, by_itself in zip(both.choices, (a.choices[0] for a in alone), strict=True):
        assert_same_greedy_path(together, by_itself)
    assert both.choices[0].text.startswith(" Paris"), both.choices[0].text
    assert both.usage is not None
    assert both.usage.prompt_tokens == sum(a.usage.prompt_tokens for a in alone if a.usage)
    assert both.usage.completion_tokens == sum(a.usage.completion_tokens for a in alone if a.usage)


def test_token_id_prompts_equal_their_text(client: openai.OpenAI, http: httpx.Client) -> None:
    ids = tokens_of(http, FRANCE)
    by_text = client.completions.create(prompt=FRANCE, max_tokens=5, logprobs=2, **GREEDY).choices[0]
    one = client.completions.create(prompt=ids, max_tokens=5, **GREEDY)
    two = client.completions.create(prompt=[ids, ids], max_tokens=5, logprobs=2, **GREEDY)
    assert one.choices[0].text == by_text.text
    assert [c.index for c in two.choices] == [0, 1]
    for choice in two.choices:
        assert_same_greedy_path(choice, by_text)


def test_n_choices_share_one_prompt_and_a_seed_makes_them_differ_reproducibly(client: openai.OpenAI) -> None:
    fields: dict[str, Any] = {"model": MODEL, "messages": QUESTION, "max_tokens": 12, "n": 3}
    seeded = client.chat.completions.create(temperature=1.0, seed=11, **fields)
    again = client.chat.completions.create(temperature=1.0, seed=11, **fields)
    assert [c.index for c in seeded.choices] == [0, 1, 2]
    texts = [c.message.content for c in seeded.choices]
    assert texts == [c.message.content for c in again.choices]
    assert len(set(texts)) > 1, texts  # seed + index per choice: not three copies of one draw
    single = client.chat.completions.create(**{**fields, "n": 1}, temperature=1.0, seed=11)
    # Not asserted: choice 0 equal to this lone run. With the default KV pool a sampled answer may turn at a
    # near-tie when its batch neighbours differ (docs/cpu.md "Batching and exact outputs"; CI saw "... It" against
    # "... This" at the twelfth token); the engine's tests check the choices against lone runs.
    assert seeded.usage is not None and single.usage is not None
    assert seeded.usage.prompt_tokens == single.usage.prompt_tokens  # the prompt counts once
    assert seeded.usage.completion_tokens > single.usage.completion_tokens  # every choice's answer counts


def test_streamed_n_choices_each_end_and_usage_comes_once(client: openai.OpenAI) -> None:
    stream = client.chat.completions.create(
        messages=QUESTION, max_tokens=6, n=2, stream=True, stream_options={"include_usage": True}, **GREEDY
    )
    texts, ends, usages = {0: "", 1: ""}, {}, []
    for chunk in stream:
        if chunk.usage is not None:
            usages.append(chunk.usage)
        for choice in chunk.choices:
            texts[choice.index] += choice.delta.content or ""
            if choice.finish_reason is not None:
                ends[choice.index] = choice.finish_reason
    whole = client.chat.completions.create(messages=QUESTION, max_tokens=6, **GREEDY)
    assert texts == {0: whole.choices[0].message.content, 1: whole.choices[0].message.content}
    assert set(ends) == {0, 1} and len(usages) == 1
    assert whole.usage is not None and usages[0].completion_tokens == 2 * whole.usage.completion_tokens


def test_logit_bias_bans_and_forces_tokens_under_greedy(client: openai.OpenAI, http: httpx.Client) -> None:
    first = client.completions.create(prompt=FRANCE, max_tokens=1, logprobs=0, **GREEDY).choices[0]
    assert first.logprobs is not None and first.logprobs.tokens
    banned = tokens_of(http, FRANCE + first.text)[len(tokens_of(http, FRANCE)) :]
    assert banned, first.text
    other = client.completions.create(prompt=FRANCE, max_tokens=1, logit_bias={str(banned[0]): -100}, **GREEDY).choices[
        0
    ]
    assert other.text != first.text
    forced_id = tokens_of(http, " banana")[-1]
    forced = client.completions.create(prompt=FRANCE, max_tokens=1, logit_bias={str(forced_id): 100}, **GREEDY).choices[
        0
    ]
    assert http.post("/api/detokenize", json={"tokens": [forced_id]}).json()["text"] == forced.text


def test_penalties_and_min_p_change_a_repetitive_answer(client: openai.OpenAI) -> None:
    prompt = "Repeat after me: hello hello hello"
    fields: dict[str, Any] = {"prompt": prompt, "max_tokens": 12, "extra_body": {"ignore_eos": True}, **GREEDY}
    plain = client.completions.create(**fields).choices[0].text
    assert plain.count("hello") >= 6, plain  # greedy goes on repeating
    for penalty in ({"frequency_penalty": 0.5}, {"presence_penalty": 2.0}, {"repetition_penalty": 1.2}):
        extra = {"extra_body": {"ignore_eos": True, **penalty}}
        penalised = client.completions.create(**{**fields, **extra}).choices[0].text
        assert penalised.count("hello") < plain.count("hello"), (penalty, plain, penalised)
    # min_p 1 keeps only the most likely token: sampling at temperature 1 becomes greedy.
    sampled = client.completions.create(
        prompt=FRANCE, max_tokens=8, temperature=1.0, seed=3, extra_body={"min_p": 1.0}, model=MODEL
    ).choices[0]
    assert sampled.text == client.completions.create(prompt=FRANCE, max_tokens=8, **GREEDY).choices[0].text


def test_a_messages_name_is_accepted(client: openai.OpenAI) -> None:
    messages: Any = [{"role": "user", "content": "Hi", "name": "bob"}]
    answer = client.chat.completions.create(messages=messages, max_tokens=4, **GREEDY)
    assert answer.choices[0].message.content


@pytest.mark.parametrize("n", [2, 8])
def test_n_up_to_the_limit_is_served(client: openai.OpenAI, n: int) -> None:
    answer = client.completions.create(prompt=FRANCE, max_tokens=2, n=n, **GREEDY)
    assert [c.index for c in answer.choices] == list(range(n))
    assert len({c.text for c in answer.choices}) == 1


def test_echo_with_n_gives_every_choice_the_prompts_scores(client: openai.OpenAI) -> None:
    """Only a prompt's first choice scores it (the others share its KV cells); every choice answers them."""
    answer = client.completions.create(prompt=FRANCE, max_tokens=3, n=2, echo=True, logprobs=1, **GREEDY)
    first, second = (choice.logprobs for choice in answer.choices)
    assert first is not None and second is not None and first.token_logprobs and second.token_logprobs
    assert first.token_logprobs == second.token_logprobs and first.tokens == second.tokens
    assert first.token_logprobs[0] is None and len(first.tokens or []) > 3
    streamed = list(
        client.completions.create(prompt=FRANCE, max_tokens=3, n=2, echo=True, logprobs=1, stream=True, **GREEDY)
    )
    heads = {c.index: c for chunk in streamed for c in chunk.choices if c.text == FRANCE}
    assert set(heads) == {0, 1}
    assert all(head.logprobs and head.logprobs.token_logprobs for head in heads.values())
