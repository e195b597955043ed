"""Downstream heads over ELMo (a tagger and a classifier), their data, features, scores and training."""

from .crf import CRF, allowed_transitions
from .data import Example, read_classification, read_examples, read_tagged
from .features import Batch, Ragged, elmo_layers, make_batch, static_features
from .folder import load_head, save_head
from .heads import Classifier, HeadConfig, Tagger, TaskHead, build_head
from .run import ModelSource, StaticSource, evaluate_task, train_task
from .spans import detect_scheme, span_scores, spans
from .static import StaticVectors, load_static_vectors
from .train import (TaskData, TrainSettings, encode_targets, evaluate_head, predict_ids, score, selection_metric,
                    train_head)

__all__ = ["Batch", "CRF", "Classifier", "Example", "HeadConfig", "ModelSource", "Ragged", "StaticSource",
           "StaticVectors", "Tagger", "TaskData", "TaskHead", "TrainSettings", "allowed_transitions", "build_head",
           "detect_scheme", "elmo_layers", "encode_targets", "evaluate_head", "evaluate_task", "load_head",
           "load_static_vectors", "make_batch", "predict_ids", "read_classification", "read_examples", "read_tagged",
           "save_head", "score", "selection_metric", "span_scores", "spans", "static_features", "train_head",
           "train_task"]
