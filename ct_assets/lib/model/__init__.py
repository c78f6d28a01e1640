"""The model layer: training sets, CatBoost training, metrics, the gate, the registry and the backtest."""
