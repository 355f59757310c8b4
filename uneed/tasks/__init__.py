"""Task builders: samples of the four U-NEED tasks, as LLM instruction records or CRS sequences."""
from .crs_format import PROMPTS, SPECIAL_TOKENS, CRSExample, ReplyLayout, crs_example
from .folds import fold_of, parse_cross_fit, split_by_fold
from .llm_format import MAX_CANDIDATES, cap_candidates, llm_record
from .predictions import PredictionFileError, load_crs_predictions, read_predictions, write_predictions
from .samples import TASKS, TaskSample, Utterance, build_samples, dialogue_samples, first_per_task
from .text import format_keys, format_tags, group_pairs, letters, parse_keys, parse_tags

__all__ = [
    "PROMPTS", "SPECIAL_TOKENS", "CRSExample", "crs_example", "MAX_CANDIDATES", "cap_candidates", "llm_record",
    "PredictionFileError", "load_crs_predictions", "read_predictions", "write_predictions", "TASKS", "TaskSample", "Utterance",
    "build_samples", "dialogue_samples", "first_per_task", "format_keys", "format_tags", "group_pairs", "letters",
    "parse_keys", "parse_tags", "fold_of", "parse_cross_fit", "split_by_fold",
]
