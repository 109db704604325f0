"""Print the README's table of models: name, what it is, parameters at the HAR shape.

python scripts/model_table.py
"""

from zoo import MODELS, create_model, list_models


def main() -> None:
    print("| model | what it is | parameters (128x9 in, 6 classes) |")
    print("|---|---|---:|")
    for name in list_models():
        params = create_model(name, (128, 9), 6).count_params()
        print(f"| `{name}` | {MODELS.describe(name)} | {params:,} |")


if __name__ == "__main__":
    main()
