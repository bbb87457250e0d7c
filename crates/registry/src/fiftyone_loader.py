"""zoo's loader for models that run through FiftyOne's own class.

Written by zoo into `<zoo dir>/.fiftyone-loader-v1/__init__.py` and run by
the model host like a source's `__init__.py`; it is zoo's code, not a
source's. It does what FiftyOne's `load_zoo_model` does once a model is
downloaded: `fiftyone.core.models.load_model(config, model_path=...,
**kwargs)`, the config the manifest's `default_deployment_config_dict` (a
Hugging Face repo's `name_or_path` already the downloaded folder).
"""

import copy


def load_model(
    model_name, model_path, zoo_deployment_config=None, zoo_pass_model_path=True, **kwargs
):
    import fiftyone.core.models as fom

    if zoo_deployment_config is None:
        raise ValueError("zoo passed no deployment config for `%s`" % model_name)
    config = copy.deepcopy(zoo_deployment_config)
    # FiftyOne passes no path for an entry without `base_filename`
    # (`ZooModel.get_path_in_dir` is None): its class fetches its weights.
    path = model_path if zoo_pass_model_path else None
    return fom.load_model(config, model_path=path, **kwargs)
