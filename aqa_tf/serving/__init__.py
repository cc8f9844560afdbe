"""Serving: the SavedModel export and its signature/metadata contract, TFLite, the `Scorer`
interface and its backends (SavedModel, TFLite, TF Serving), and scoring of whole videos."""
