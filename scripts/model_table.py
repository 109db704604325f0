"""Print the README's table of models: name, what it is, parameters at the HAR shape.

python scripts/model_table.py

A model that gives no classification (es_rnn: forecasts only) is counted with its own output
kind at the same shape, six outputs, and says so in a note instead of stopping the table.
"""

from zoo import MODELS, create_model, list_models
from zoo.models import model_output_kinds


def main() -> None:
    print("| model | what it is | parameters (128x9 in, 6 classes) |")
    print("|---|---|---:|")
    for name in list_models():
        kinds = model_output_kinds(name)
        kind = "classification" if "classification" in kinds else kinds[0]
        params = create_model(name, (128, 9), 6, output_kind=kind).count_params()
        note = "" if kind == "classification" else f" ({kind} only: 6 outputs)"
        print(f"| `{name}` | {MODELS.describe(name)} | {params:,}{note} |")


if __name__ == "__main__":
    main()
