"""Downstream heads over ELMo (a tagger and a classifier), their data, features and training."""

from .data import Example, read_classification, read_examples, read_tagged
from .features import Batch, Ragged, elmo_layers, make_batch, static_features
from .folder import load_head, save_head
from .heads import Classifier, HeadConfig, Tagger, TaskHead, build_head
from .run import ModelSource, StaticSource, evaluate_task, train_task
from .static import StaticVectors, load_static_vectors
from .train import TaskData, TrainSettings, encode_targets, evaluate_head, predict_ids, score, train_head

__all__ = ["Batch", "Classifier", "Example", "HeadConfig", "ModelSource", "Ragged", "StaticSource", "StaticVectors",
           "Tagger", "TaskData", "TaskHead", "TrainSettings", "build_head", "elmo_layers", "encode_targets",
           "evaluate_head", "evaluate_task", "load_head", "load_static_vectors", "make_batch", "predict_ids",
           "read_classification", "read_examples", "read_tagged", "save_head", "score", "static_features",
           "train_head", "train_task"]
