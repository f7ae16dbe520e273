"""Tokenizer and chat templates: `tokenizer.json` via the `tokenizers` library, plus the two chat
formats the project needs (Llama-3 for the paper's Llama-3.2-1B backbone, ChatML for SmolLM2 / Qwen),
chosen from the checkpoint, never from a directory name.

`encode_chat(user, answer)` returns (input_ids, labels) with the loss on the answer and on the
end-of-turn token that closes it (the release supervises `answer<|eot_id|>`).
`bos` (1, or 2 as the release) is the number of <|begin_of_text|> tokens a Llama-3 sequence starts with.
A molecule placeholder "<mol>" in the user text becomes MOL_TOKEN_ID (-200, the release's <image> id);
molecule.embed_inputs later replaces it with one embedding per heavy atom.
"""
import json
import os

from tokenizers import Tokenizer as HFTokenizer, decoders, models, pre_tokenizers

MOL_PLACEHOLDER = "<mol>"
MOL_TOKEN_ID = -200
IGNORE_INDEX = -100
# The release's system prompt (its conversation template); used for both templates so prompts match the paper.
SYSTEM_PROMPT = ("A chat between a curious user and an artificial intelligence assistant. "
                 "The assistant gives helpful, detailed, and polite answers to the user's questions.")

# template -> (turn opener for a role, end-of-turn string, text before the first turn)
TEMPLATES = {
    "llama3": (lambda role: f"<|start_header_id|>{role}<|end_header_id|>\n\n", "<|eot_id|>", "<|begin_of_text|>"),
    "chatml": (lambda role: f"<|im_start|>{role}\n", "<|im_end|>", ""),
}
# end tokens that stop generation, per template (Llama-3.2-Instruct's generation_config lists all three)
STOP_TOKENS = {"llama3": ["<|eot_id|>", "<|end_of_text|>", "<|eom_id|>"], "chatml": ["<|im_end|>", "<|endoftext|>"]}


class Tokenizer:
    def __init__(self, tok: HFTokenizer, template: str):
        assert template in TEMPLATES, f"unknown chat template {template!r}; have {list(TEMPLATES)}"
        self.tok, self.template = tok, template
        vocab = tok.get_vocab(with_added_tokens=True)
        self.eos_token_ids = [vocab[t] for t in STOP_TOKENS[template] if t in vocab]
        if not self.eos_token_ids:
            raise ValueError(f"tokenizer has none of the {template} end tokens {STOP_TOKENS[template]}")
        self.eot_id = self.eos_token_ids[0]  # closes an assistant answer
        pad = vocab.get("<|finetune_right_pad_id|>", vocab.get("<|endoftext|>"))
        self.pad_token_id = pad if pad is not None else self.eot_id
        self.vocab_size = tok.get_vocab_size(with_added_tokens=True)
        self.bos = 1  # begin-of-text tokens per sequence (set_bos)

    def set_bos(self, n: int) -> "Tokenizer":
        """Start every chat sequence with n begin-of-text tokens. The release's carry two: its Llama-3 system
        string starts with a literal <|begin_of_text|> (WillDreamer/OmniMol data_pipe/conversation_lib.py,
        conv_llama3) and tokenizer.encode adds one more, which tokenizer_image_token keeps
        (WillDreamer/Omni-Mol data_pipe/chat_template.py:31-45); text-only prompts go through tokenizer() with
        the same default add_special_tokens=True. ChatML has no such token: only n = 1 (nothing) there."""
        if n not in (1, 2):
            raise ValueError(f"bos must be 1 or 2, got {n}")
        if n != 1 and not TEMPLATES[self.template][2]:
            raise ValueError(f"bos {n}: the {self.template} template has no begin-of-text token")
        self.bos = n
        return self

    @classmethod
    def from_dir(cls, path: str) -> "Tokenizer":
        tok_file = os.path.join(path, "tokenizer.json")
        if not os.path.exists(tok_file):
            raise FileNotFoundError(f"no tokenizer.json in {path}")
        tok = HFTokenizer.from_file(tok_file)
        return cls(tok, detect_template(path, tok))

    def encode(self, text: str) -> list[int]:
        # special tokens written in the text (e.g. "<|im_start|>") map to their ids; no BOS is added here
        return self.tok.encode(text, add_special_tokens=False).ids

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return self.tok.decode([i for i in ids if i >= 0], skip_special_tokens=skip_special_tokens)

    def _encode_with_mols(self, text: str) -> list[int]:
        ids = []
        for i, chunk in enumerate(text.split(MOL_PLACEHOLDER)):
            if i:
                ids.append(MOL_TOKEN_ID)
            ids += self.encode(chunk)
        return ids

    def chat_prompt(self, user: str, system: str | None = None) -> str:
        """The prompt text up to and including the assistant header (what generation starts from)."""
        header, end, start = TEMPLATES[self.template]
        system = SYSTEM_PROMPT if system is None else system
        sys_turn = header("system") + system + end + ("\n" if self.template == "chatml" else "") if system else ""
        user_turn = header("user") + user + end + ("\n" if self.template == "chatml" else "")
        return start * self.bos + sys_turn + user_turn + header("assistant")

    def encode_chat(self, user: str, answer: str | None = None, system: str | None = None):
        """-> (input_ids, labels). Labels are IGNORE_INDEX except on the answer and its end-of-turn token."""
        ids = self._encode_with_mols(self.chat_prompt(user, system))
        labels = [IGNORE_INDEX] * len(ids)
        if answer is not None:
            ans = self.encode(answer) + [self.eot_id]
            ids, labels = ids + ans, labels + ans
        return ids, labels


def detect_template(path: str, tok: HFTokenizer) -> str:
    """Llama-3 or ChatML, from tokenizer_config.json's chat_template, else from the vocabulary."""
    cfg_file = os.path.join(path, "tokenizer_config.json")
    text = ""
    if os.path.exists(cfg_file):
        with open(cfg_file) as f:
            text = str(json.load(f).get("chat_template", ""))
    vocab = tok.get_vocab(with_added_tokens=True)
    if "<|start_header_id|>" in text or (not text and "<|start_header_id|>" in vocab):
        return "llama3"
    if "<|im_start|>" in text or (not text and "<|im_start|>" in vocab):
        return "chatml"
    raise ValueError(f"cannot tell the chat template of the tokenizer in {path}: neither Llama-3 nor ChatML tokens")


def byte_level_tokenizer(special_tokens: list[str], vocab_size: int | None = None) -> HFTokenizer:
    """A byte-level BPE with no merges (one token per byte) plus special tokens: the tiny test model's
    tokenizer. Deterministic, no training, no files."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {ch: i for i, ch in enumerate(alphabet)}
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens(special_tokens)
    return tok


def bpe_tokenizer_from_gguf(tokens: list[str], merges: list[str], token_types: list[int], pre: str) -> HFTokenizer:
    """Rebuild a GPT-2 style byte-level BPE from a GGUF vocabulary. Token type 3 (control) tokens are
    special. `pre` is llama.cpp's pre-tokenizer name: 'smollm' splits digits one by one before the
    GPT-2 regex (llama.cpp LLAMA_VOCAB_PRE_TYPE_SMOLLM), as SmolLM2's own tokenizer.json does."""
    vocab = {t: i for i, t in enumerate(tokens)}
    tok = HFTokenizer(models.BPE(vocab=vocab, merges=[tuple(m.split(" ", 1)) for m in merges]))
    byte_level = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    if pre in ("smollm", "starcoder", "refact"):
        tok.pre_tokenizer = pre_tokenizers.Sequence([pre_tokenizers.Digits(individual_digits=True), byte_level])
    elif pre in ("gpt2", "default", ""):
        tok.pre_tokenizer = byte_level
    else:
        raise ValueError(f"GGUF pre-tokenizer {pre!r} is not supported by this converter")
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([t for t, ty in zip(tokens, token_types) if ty == 3])
    return tok
