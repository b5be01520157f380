"""Tiny randomly initialised models of the real architectures, saved like a downloaded model.

No weights can be downloaded here, so the tests load these through the real model-URI path
(file://...) and check shapes, payloads and ids, not quality. Sizes are the smallest the
architectures accept (hidden 32, 1-2 layers), so each builds in well under a second.
"""

from __future__ import annotations

from pathlib import Path

import torch

# The byte-level alphabet GPT-2/CLIP BPE tokenizers start from (every byte maps to one symbol).
_PRINTABLE = [*range(ord("!"), ord("~") + 1), *range(ord("¡"), ord("¬") + 1), *range(ord("®"), ord("ÿ") + 1)]


def _byte_symbols() -> list[str]:
    extra = [b for b in range(256) if b not in _PRINTABLE]
    return [chr(b) for b in _PRINTABLE] + [chr(256 + i) for i in range(len(extra))]


def _seeded() -> None:
    torch.manual_seed(0)


def clip(path: Path) -> Path:
    """CLIPModel (both towers) + CLIP tokenizer (byte-level, no merges) + PIL image processor."""
    from transformers import CLIPConfig, CLIPModel, CLIPTokenizer
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    _seeded()
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    vocab.update({s + "</w>": len(symbols) + i for i, s in enumerate(symbols)})
    bos, eos = len(vocab), len(vocab) + 1
    vocab.update({"<|startoftext|>": bos, "<|endoftext|>": eos})
    config = CLIPConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                         vocab_size=len(vocab), max_position_embeddings=77, bos_token_id=bos,
                         eos_token_id=eos, pad_token_id=eos),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=2, num_attention_heads=4,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    CLIPModel(config).save_pretrained(path)
    CLIPTokenizer(vocab=vocab, merges=[]).save_pretrained(path)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def whisper(path: Path, timestamps: bool = False) -> Path:
    """WhisperForConditionalGeneration (English-only layout) + processor. With `timestamps`, the
    vocabulary and generation config carry whisper's 1501 timestamp tokens, as openai's do."""
    from transformers import (
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )

    _seeded()
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    specials = ["<|endoftext|>", "<|startoftranscript|>", "<|en|>", "<|transcribe|>", "<|notimestamps|>"]
    for special in specials:
        vocab[special] = len(vocab)
    if timestamps:  # after the last special token: that is where the tokenizer looks for them
        vocab.update({f"<|{i * 0.02:.2f}|>": len(vocab) + i for i in range(1501)})
    eos, start = vocab["<|endoftext|>"], vocab["<|startoftranscript|>"]
    config = WhisperConfig(
        vocab_size=len(vocab), num_mel_bins=80, d_model=32, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37,
        max_source_positions=1500, max_target_positions=64, pad_token_id=eos, bos_token_id=eos,
        eos_token_id=eos, decoder_start_token_id=start, suppress_tokens=[], begin_suppress_tokens=[],
    )
    model = WhisperForConditionalGeneration(config)
    if timestamps:
        generation = model.generation_config
        generation.no_timestamps_token_id = vocab["<|notimestamps|>"]
        generation.max_initial_timestamp_index = 50
        generation.is_multilingual = False
        generation._from_model_config = False  # else loading re-derives it from config.json
    model.save_pretrained(path)
    tokenizer = WhisperTokenizer(vocab=vocab, merges=[])
    tokenizer.add_special_tokens({"additional_special_tokens": specials[1:]})
    WhisperProcessor(WhisperFeatureExtractor(feature_size=80), tokenizer).save_pretrained(path)
    return path


def detr(path: Path) -> Path:
    """DetrForObjectDetection with transformers' own ResNet backbone (no timm) + PIL processor."""
    from transformers import DetrConfig, DetrForObjectDetection, ResNetConfig
    from transformers.models.detr.image_processing_pil_detr import DetrImageProcessorPil

    _seeded()
    backbone = ResNetConfig(embedding_size=8, hidden_sizes=[8, 16], depths=[1, 1], layer_type="basic",
                            out_features=["stage2"])
    config = DetrConfig(
        use_timm_backbone=False, use_pretrained_backbone=False, backbone_config=backbone, d_model=32,
        encoder_layers=1, decoder_layers=1, encoder_attention_heads=2, decoder_attention_heads=2,
        encoder_ffn_dim=37, decoder_ffn_dim=37, num_queries=10,
        id2label={0: "cat", 1: "dog", 2: "car"}, label2id={"cat": 0, "dog": 1, "car": 2},
    )
    DetrForObjectDetection(config).save_pretrained(path)
    DetrImageProcessorPil(size={"shortest_edge": 64, "longest_edge": 96}).save_pretrained(path)
    return path


def vit_gpt2(path: Path) -> Path:
    """VisionEncoderDecoderModel (ViT encoder + GPT-2 decoder) + GPT-2 tokenizer + PIL ViT processor."""
    from transformers import (
        GPT2Config,
        GPT2Tokenizer,
        VisionEncoderDecoderConfig,
        VisionEncoderDecoderModel,
        ViTConfig,
    )
    from transformers.models.vit.image_processing_pil_vit import ViTImageProcessorPil

    _seeded()
    symbols = _byte_symbols()
    vocab = {s: i for i, s in enumerate(symbols)}
    eos = vocab["<|endoftext|>"] = len(vocab)
    encoder = ViTConfig(hidden_size=32, num_hidden_layers=1, num_attention_heads=2, intermediate_size=37,
                        image_size=32, patch_size=8)
    decoder = GPT2Config(n_embd=32, n_layer=1, n_head=2, vocab_size=len(vocab), n_positions=64,
                         bos_token_id=eos, eos_token_id=eos)
    config = VisionEncoderDecoderConfig.from_encoder_decoder_configs(encoder, decoder)
    config.decoder_start_token_id = config.pad_token_id = config.eos_token_id = eos
    model = VisionEncoderDecoderModel(config=config)
    model.generation_config.decoder_start_token_id = model.generation_config.pad_token_id = eos
    model.generation_config.eos_token_id = eos
    model.save_pretrained(path)
    GPT2Tokenizer(vocab=vocab, merges=[]).save_pretrained(path)
    ViTImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def blip(path: Path) -> Path:
    """BlipForConditionalGeneration + BERT word-piece tokenizer + PIL BLIP processor."""
    from transformers import BertTokenizer, BlipConfig, BlipForConditionalGeneration
    from transformers.models.blip.image_processing_pil_blip import BlipImageProcessorPil

    _seeded()
    words = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", "[DEC]", "a", "photo", "of", "dog", "cat", "car",
             "red", "on", "the", "beach", "photography"]
    (path / "vocab.txt").write_text("\n".join(words) + "\n")
    tokenizer = BertTokenizer(vocab_file=str(path / "vocab.txt"), bos_token="[DEC]")
    config = BlipConfig(
        text_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                         vocab_size=len(words), max_position_embeddings=64, bos_token_id=words.index("[DEC]"),
                         eos_token_id=words.index("[SEP]"), pad_token_id=0, sep_token_id=words.index("[SEP]")),
        vision_config=dict(hidden_size=32, intermediate_size=37, num_hidden_layers=1, num_attention_heads=2,
                           image_size=32, patch_size=8),
        projection_dim=16,
    )
    BlipForConditionalGeneration(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    BlipImageProcessorPil(size={"height": 32, "width": 32}).save_pretrained(path)
    return path


def rt_detr(path: Path) -> Path:
    """RTDetrForObjectDetection (its own ResNet backbone) + PIL processor: the default's architecture."""
    from transformers import RTDetrConfig, RTDetrForObjectDetection, RTDetrResNetConfig
    from transformers.models.rt_detr.image_processing_pil_rt_detr import RTDetrImageProcessorPil

    _seeded()
    backbone = RTDetrResNetConfig(embedding_size=8, hidden_sizes=[8, 16, 32, 64], depths=[1, 1, 1, 1],
                                  layer_type="basic", out_features=["stage2", "stage3", "stage4"])
    config = RTDetrConfig(
        backbone_config=backbone, encoder_hidden_dim=16, encoder_in_channels=[16, 32, 64],
        decoder_in_channels=[16, 16, 16], d_model=16, encoder_layers=1, decoder_layers=1,
        encoder_attention_heads=2, decoder_attention_heads=2, encoder_ffn_dim=37, decoder_ffn_dim=37,
        decoder_n_points=2, num_queries=10,
        id2label={0: "cat", 1: "dog", 2: "car"}, label2id={"cat": 0, "dog": 1, "car": 2},
    )
    RTDetrForObjectDetection(config).save_pretrained(path)
    RTDetrImageProcessorPil(size={"height": 64, "width": 64}).save_pretrained(path)
    return path
