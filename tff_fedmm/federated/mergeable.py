"""A deterministic variant of TFF's mergeable-computation context, for `--workers` with two or more."""

from __future__ import annotations


def ordered_mergeable_context(async_contexts, per_client: bool = True):
    """TFF's mergeable-computation context (`create_mergeable_comp_execution_context`), made deterministic.

    How it runs a call: TFF's compiler splits the computation at its single aggregation stage into
    `up_to_merge` (client work up to the partial aggregate), `merge` and `after_merge`; the CLIENTS-placed
    arguments are cut into contiguous slices ("subrounds"); each free worker takes the next slice and
    runs `up_to_merge` on it; the driver merges the partial aggregates; then every slice runs
    `after_merge` (which recomputes the client work whose CLIENTS-placed results it returns: nothing but
    the aggregate crosses from `up_to_merge` to `after_merge`).

    TFF's own context (0.87) merges the partial aggregates, and concatenates the slices of a
    CLIENTS-placed result, in the order the workers *finish*: a result's clients come back permuted
    (e.g. [2, 3, 0, 1]) — a caller that pairs returned client states with next round's data by position
    would train market A's state on market B's data — and the float sums depend on timing. Here the
    partial aggregates are merged in slice order and CLIENTS-placed results come back in argument order.

    `per_client` (default): one client per slice, so the aggregate is the same left-to-right sum over
    clients a single worker computes — measured bit-identical to the single-process run — and a free
    worker pulls the next market (uneven markets balance themselves). `per_client=False`: one slice per
    worker, TFF's default (fewer calls; partial sums reassociate the float32 sum, and training can
    amplify those last-bit differences). Computations without CLIENTS-placed arguments run once.
    """
    import asyncio

    from tensorflow_federated.python.core.backends.native import mergeable_comp_compiler
    from tensorflow_federated.python.core.impl.execution_contexts import mergeable_comp_execution_context as mc
    from tensorflow_federated.python.core.impl.executors import cardinalities_utils
    from tensorflow_federated.python.core.impl.types import (
        computation_types, placements, type_analysis, type_conversions,
    )

    async def run_pool(task, arg_list):
        """`task(arg, context)` for every slice, each context taking the next slice when free."""
        results = [None] * len(arg_list)
        pending = iter(enumerate(arg_list))  # shared: whichever context is free pulls the next slice

        async def drain(context):
            for index, arg in pending:
                results[index] = await task(arg, context)

        tasks = [asyncio.ensure_future(drain(c)) for c in async_contexts]
        try:
            await asyncio.gather(*tasks)
        except BaseException:  # e.g. a lost worker: the other workers' slices are not waited for
            for task in tasks:
                task.cancel()
            raise
        return results

    def server_only(type_spec) -> bool:
        return not isinstance(type_spec, computation_types.FederatedType) or type_spec.all_equal

    async def invoke_form(comp, arg_list):
        partials = await run_pool(lambda x, c: mc._invoke_up_to_merge_and_return_context(comp, x, c), arg_list)
        merged = partials[0]
        for partial in partials[1:]:  # in slice order, so the float sums do not depend on timing
            merged = await mc._merge_results(comp, merged, partial, async_contexts[0])
        if type_analysis.contains_only(comp.after_merge.type_signature.result, server_only):
            return await mc._compute_after_merged(comp, arg_list[0], merged, async_contexts[0])
        results = await run_pool(lambda x, c: mc._compute_after_merged(comp, x, merged, c), arg_list)
        return mc._repackage_partitioned_values(results, result_type_spec=comp.after_merge.type_signature.result)

    class OrderedMergeableCompExecutionContext(mc.MergeableCompExecutionContext):
        def invoke(self, comp, arg=None):
            if not isinstance(comp, mc.MergeableCompForm):
                comp = self._compiler_pipeline.compile(comp)
            if arg is None:
                arg_list = [None]
            else:
                parameter = comp.up_to_merge.type_signature.parameter
                clients = cardinalities_utils.infer_cardinalities(arg, parameter).get(placements.CLIENTS)
                subrounds = 1 if not clients else clients if per_client else len(async_contexts)
                arg_list = mc.MergeableCompExecutionContextValue(arg, parameter, subrounds).value()
            result = self._async_runner.run_coro_and_return_result(invoke_form(comp, arg_list))
            return type_conversions.type_to_py_container(result, comp.after_merge.type_signature.result)

    def compile_form(comp):
        """Secure intrinsics replaced as in `context._compile`, then TFF's split at the single aggregation stage.

        The replacement rebuilds the computation from its proto, which forgets the Python containers
        of the result (e.g. `LearningAlgorithmState`); `after_merge` gets the original result type back.
        """
        import tensorflow_federated as tff
        from tensorflow_federated.python.core.impl.computation import computation_impl

        form = mergeable_comp_compiler.compile_to_mergeable_comp_form(
            tff.backends.test.replace_secure_intrinsics_with_bodies(comp))
        after_merge = computation_impl.ConcreteComputation.with_type(
            form.after_merge,
            computation_types.FunctionType(form.after_merge.type_signature.parameter, comp.type_signature.result))
        return mc.MergeableCompForm(up_to_merge=form.up_to_merge, merge=form.merge, after_merge=after_merge)

    return OrderedMergeableCompExecutionContext(async_contexts=async_contexts, compiler_fn=compile_form)
