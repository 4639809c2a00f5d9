"""The simulated gateway: teams with virtual keys, model groups, Fly machines.

Everything here is a constant of one run, drawn once from the run's seed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

PROVIDER_EXCEPTION = {"openai": "OpenAIException", "azure": "AzureException",
                      "anthropic": "AnthropicException", "groq": "GroqException"}


@dataclass(frozen=True, slots=True)
class ModelGroup:
    name: str  # the public model group the client asks for
    model: str  # provider-prefixed model name as LiteLLM logs it
    provider: str
    api_base: str
    call_type: str
    price_in: float  # USD per prompt token
    price_out: float  # USD per completion token
    ttft_s: float  # median time to first token (embeddings: median latency)
    sigma: float  # lognormal spread of the latency
    tokens_per_s: float
    prompt_median: int
    completion_median: int
    stream_share: float
    fallback: str | None
    model_id: str = ""


@dataclass(frozen=True, slots=True)
class Key:
    alias: str
    hash: str
    user_agent: str
    tags: tuple[str, ...]


@dataclass(slots=True)
class Team:
    alias: str
    team_id: str
    share: float  # share of the traffic
    mix: dict[str, float]  # model group -> probability
    keys: list[Key]
    budget: float = 0.0  # USD per day, decided after the traffic is known
    appears_at: float = 0.0  # fraction of the run after which the team sends traffic


@dataclass(frozen=True, slots=True)
class Machine:
    app: str
    instance: str
    region: str

    @property
    def host(self) -> str:
        return self.instance[:4]


@dataclass(slots=True)
class World:
    teams: list[Team]
    models: list[ModelGroup]
    gateway: list[Machine]
    langfuse_worker: Machine
    project_id: str = "cm1proj0001"
    model_index: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.model_index = {m.name: i for i, m in enumerate(self.models)}

    def provider_models(self, provider: str) -> list[int]:
        return [i for i, m in enumerate(self.models) if m.provider == provider]


_OPENAI = "https://api.openai.com/v1"
_MODELS = [  # name, model, provider, api_base, call_type, $/Mtok in, out, ttft, sigma, tok/s, prompt, compl, stream, fallback
    ("gpt-4o-mini", "gpt-4o-mini", "openai", _OPENAI, "acompletion", 0.15, 0.6, 0.45, 0.45, 120, 600, 150, 0.35,
     "claude-haiku"),
    ("gpt-4o", "gpt-4o", "openai", _OPENAI, "acompletion", 2.5, 10.0, 0.7, 0.45, 90, 1500, 250, 0.4, "claude-sonnet"),
    ("gpt-4.1-mini", "azure/gpt-4.1-mini", "azure", "https://acme-eastus2.openai.azure.com", "acompletion",
     0.4, 1.6, 0.55, 0.5, 110, 900, 180, 0.3, "gpt-4o-mini"),
    ("claude-sonnet", "anthropic/claude-sonnet-4-5", "anthropic", "https://api.anthropic.com", "acompletion",
     3.0, 15.0, 1.1, 0.45, 80, 2000, 300, 0.5, "gpt-4o"),
    ("claude-haiku", "anthropic/claude-haiku-4-5", "anthropic", "https://api.anthropic.com", "acompletion",
     1.0, 5.0, 0.6, 0.45, 150, 800, 180, 0.4, "gpt-4o-mini"),
    ("llama-70b", "groq/llama-3.3-70b-versatile", "groq", "https://api.groq.com/openai/v1", "acompletion",
     0.59, 0.79, 0.2, 0.5, 300, 700, 200, 0.3, "gpt-4o-mini"),
    ("embed-small", "text-embedding-3-small", "openai", _OPENAI, "aembedding", 0.02, 0.0, 0.22, 0.4, 1, 400, 0,
     0.0, None),
]

_TEAMS = [  # alias, share, mix, key suffixes, user agent
    ("prod_customer", 0.32, {"gpt-4o-mini": .45, "gpt-4o": .1, "claude-haiku": .1, "llama-70b": .1,
                             "embed-small": .25}, ("web", "api", "batch"), "OpenAI/Python 1.99.1"),
    ("prod_ceo", 0.12, {"claude-sonnet": .4, "gpt-4o": .3, "gpt-4o-mini": .2, "embed-small": .1},
     ("assistant", "briefing"), "OpenAI/JS 5.12.0"),
    ("support", 0.22, {"gpt-4o-mini": .5, "gpt-4.1-mini": .2, "claude-haiku": .1, "embed-small": .2},
     ("bot", "triage"), "langchain/0.3.27"),
    ("analytics", 0.18, {"llama-70b": .35, "gpt-4o-mini": .25, "claude-sonnet": .1, "embed-small": .3},
     ("etl", "agent"), "python-requests/2.32.3"),
    ("internal-dev", 0.16, {m[0]: 1 / 7 for m in _MODELS}, ("alice", "bob", "ci"), "curl/8.5.0"),
    ("growth", 0.05, {"gpt-4o-mini": .6, "claude-haiku": .2, "embed-small": .2}, ("landing",), "OpenAI/JS 5.12.0"),
]


def _hex(rng: np.random.Generator, n_bytes: int) -> str:
    return rng.bytes(n_bytes).hex()


def _model(rng: np.random.Generator, spec: tuple) -> ModelGroup:
    name, model, prov, base, ctype, pin, pout, ttft, sigma, tps, pm, cm, stream, fb = spec
    return ModelGroup(name, model, prov, base, ctype, pin / 1e6, pout / 1e6, ttft, sigma, tps, pm, cm, stream, fb,
                      model_id=_hex(rng, 5))


def _team(rng: np.random.Generator, spec: tuple, appears_at: float) -> Team:
    alias, share, mix, suffixes, ua = spec
    keys = [Key(f"{alias}-{s}", _hex(rng, 32), ua, (alias.split("_")[0],)) for s in suffixes]
    return Team(alias, "team-" + _hex(rng, 3), share, dict(mix), keys, appears_at=appears_at)


def build_world(rng: np.random.Generator, new_team_at: float | None = 0.45) -> World:
    """The default gateway. ``new_team_at`` is when (fraction of the run) the last team starts."""
    models = [_model(rng, spec) for spec in _MODELS]
    teams = [_team(rng, spec, 0.0) for spec in _TEAMS[:-1]]
    if new_team_at is not None:
        teams.append(_team(rng, _TEAMS[-1], new_team_at))
    gateway = [Machine("llm-gateway", _hex(rng, 7), "iad") for _ in range(2)]
    worker = Machine("acme-langfuse-worker", _hex(rng, 7), "iad")
    return World(teams, models, gateway, worker)
