"""What a run of train.py does, from its parsed options (train.parse_args).

    job = texture_job(args)          # or style_job(args), feedforward_job(args): images loaded and checked
    attach_optimisation(job, args)   # or attach_feedforward(job, args): its steps, saves and finish
    for step, item, losses in job.start(network_weights): ...

A job is a namespace: the objective, the output shape, the run folder's stem and the
config.json entries of its images; attached, start (the steps: synthesize's or
feedforward's generator), save_step and finish (runs.py's). Every size and memory check
happens here, before anything large is made, so a bad input is one line and no folder.
"""
import os
import types

import generator_design
import layers
import utils
from options import check_memory, check_scales, check_size, resolve_schedule, stage_shapes
from utils import InputError, find_image, load_image


def texture_source(args):
    """(path, source image) of --image at --size, its sizes checked before anything large is made."""
    image_path = find_image(args.image)
    source_shape = utils.image_shape(image_path, args.size)
    # Before loading the source: a huge --size would make a huge image at once.
    check_memory(source_shape, args.loss, args.precision, args.layer_weights, '--size')
    source = load_image(image_path, args.size)
    check_size(source.shape[:2], args.layer_weights, 'the source (after --size)')
    return image_path, source


def texture_job(args):
    """What a texture run optimises, shows and records."""
    image_path = find_image(args.image)
    output_shape = tuple(args.output_shape or utils.image_shape(image_path, args.size))
    if args.output_shape:
        check_memory(output_shape, args.loss, args.precision, args.layer_weights, '--output-size')
    image_path, source = texture_source(args)
    check_size(output_shape, args.layer_weights, '--output-size')
    resolve_schedule(args, [source.shape[:2]], output_shape)
    check_scales(args, [source.shape[:2]], output_shape)
    with utils.quiet_stderr():  # TensorFlow, after the checks: a bad option is one line at once
        import synthesize
    return types.SimpleNamespace(
        objective=synthesize.Objective.texture(source, args.layer_weights, args.loss, args.swd_weight),
        output_shape=output_shape,
        stem=stem_of(image_path), shown=[(source, 'source')], plotted=None,
        to_rgb=lambda image: image,
        config={'image': os.path.abspath(image_path), 'source_shape': list(source.shape[:2]),
                'output_shape': list(output_shape)})


def feedforward_job(args):
    """What a feed-forward run trains, shows and records; with --resume, where it left off."""
    import runs
    output_shape = tuple(args.output_shape or utils.image_shape(find_image(args.image), args.size))
    check_size(output_shape, args.layer_weights, '--output-size')
    generator_design.check_sample_size(output_shape, args.tileable)
    check_memory(output_shape, args.loss, args.precision, args.layer_weights, '--output-size',
                 batch=args.batch_size, feed_forward=True)
    # Each stage's samples: a fraction of the output, tileable ones on the generator's grid.
    shapes = stage_shapes(output_shape, args.scales, generator_design.COARSEST if args.tileable else 1)
    for scale, shape in zip(args.scales, shapes):
        what = f'the training samples at --scales {scale:g}'
        check_size(shape, args.layer_weights, what)
        if min(shape) < generator_design.COARSEST:
            raise InputError(f"{what} are {shape[1]}x{shape[0]} px, too small for the generator: each side needs "
                             f"at least {generator_design.COARSEST} px (a larger scale or --output-size)")
    image_path, source = texture_source(args)
    state, history = None, []
    if getattr(args, 'run_dir', None):  # --resume
        runs.training_lock(args.run_dir).close()  # one clear line now; train.run holds it for the training
        state, _ = generator_design.load_checkpoint(os.path.join(args.run_dir, generator_design.CHECKPOINT_NAME))
        history = runs.read_history(args.run_dir)
        done = int(state.get('global_step', 0))
        if sum(args.iterations) <= done:
            raise InputError(f"{args.run_dir} has trained {done} steps already: give --iterations "
                             f"that add up to more than {done} to train on")
    with utils.quiet_stderr():  # TensorFlow, after the checks
        import synthesize
    job = types.SimpleNamespace(
        objective=synthesize.Objective.texture(source, args.layer_weights, args.loss, args.swd_weight),
        output_shape=output_shape, stem=stem_of(image_path), source=source, state=state, history=history,
        stages=list(zip(args.scales, args.iterations, shapes)),
        config={'image': os.path.abspath(image_path), 'source_shape': list(source.shape[:2]),
                'output_shape': list(output_shape)})
    return job


def style_job(args):
    """What a style-transfer run optimises, shows and records."""
    import colour
    content_path = find_image(args.content)
    content_size = min(args.size, *utils.image_shape(content_path))  # never enlarged
    check_memory(utils.image_shape(content_path, content_size), args.loss, args.precision,
                 {**args.layer_weights, **args.content_layer_weights}, '--size')
    content = load_image(content_path, content_size)
    output_shape = content.shape[:2]
    every_layer = {**args.layer_weights, **args.content_layer_weights}
    check_size(output_shape, every_layer, 'the content image (after --size)')
    style_paths = [find_image(name) for name in args.styles]
    style_size = max(1, round(args.style_scale * min(output_shape)))
    for path in style_paths:  # each style image gets its own network: check before it is made
        check_memory(utils.image_shape(path, style_size), args.loss, args.precision, args.layer_weights,
                     '--style-scale')
    styles = [load_image(path, style_size) for path in style_paths]
    for path, style in zip(style_paths, styles):
        check_size(style.shape[:2], args.layer_weights, f'style {os.path.basename(path)} (after --style-scale)')
    shown = [(content, 'content')] + [(style, f'style {stem_of(path)}') for path, style in zip(style_paths, styles)]
    to_rgb = lambda image: image  # noqa: E731
    if args.preserve_colors:  # transfer luminance only, then put the photo's colours back
        content, styles = colour.luminance_inputs(content, styles)
        photo = shown[0][0]
        # Coarse stages are smaller than the photo: its colours at their size.
        to_rgb = lambda image: colour.recolour(  # noqa: E731
            image, photo if image.shape[:2] == photo.shape[:2] else utils.resize(photo, image.shape[:2]))
    resolve_schedule(args, [style.shape[:2] for style in styles], output_shape)
    check_scales(args, [style.shape[:2] for style in styles], output_shape)
    check_memory(output_shape, args.loss, args.precision, every_layer, '--size')
    with utils.quiet_stderr():  # TensorFlow, after the checks
        import synthesize
    objective = synthesize.Objective(
        styles, args.layer_weights, args.blend, args.style_weight, content, args.content_layer_weights,
        args.content_weight, args.tv_weight, args.loss, args.swd_weight)
    return types.SimpleNamespace(
        objective=objective, output_shape=output_shape,
        stem='_'.join([stem_of(content_path)] + [stem_of(path) for path in style_paths]),
        shown=shown, plotted=['style', 'swd', 'content', 'tv'], to_rgb=to_rgb,
        config={'content': os.path.abspath(content_path), 'styles': [os.path.abspath(p) for p in style_paths],
                'style_shapes': [list(style.shape[:2]) for style in styles],
                'output_shape': list(output_shape)})


def stem_of(path):
    return os.path.splitext(os.path.basename(path))[0]


def starting_image(init, job, preserve_colors=False):
    """The start as an image, or None for noise (made by synthesize from the seed)."""
    import colour
    if init in utils.INITS:
        return None
    if init == 'content':
        return job.objective.content_image
    try:
        path = find_image(init)
    except InputError:
        raise InputError(f"--init must be {', '.join(utils.INITS)}, content or an image: "
                         f"{init} is none of these") from None
    with utils.opened_image(path) as image:
        start = utils.resize_array(utils.rgb_array(utils.upright(image)), job.output_shape)
    return colour.grey(colour.luminance(start)) if preserve_colors else start


def attach_optimisation(job, args):
    """The pixel optimisation's steps, and what it saves of them."""
    import colour
    import runs
    import synthesize
    start = starting_image(args.init, job, args.preserve_colors)
    if args.match_colors:  # the pixels' colour histograms, per channel, to the style image's
        base, reference = job.to_rgb, job.objective.style_images[0]
        if args.preserve_colors:
            reference = job.shown[0][0]  # luminance-only transfer keeps the photo's colours
        job.to_rgb = lambda image: colour.match_histograms(base(image), reference)
    job.history = []
    step = layers.tileable_size_step(layers.deepest(list(args.layer_weights))) if args.tileable else 1
    job.stages = list(zip(args.scales, args.iterations, stage_shapes(job.output_shape, args.scales, step)))
    job.start = lambda network_weights: synthesize.synthesize(
        network_weights, job.objective, job.output_shape, args.pooling, args.optimizer, args.iterations, args.seed,
        args.init if start is None else None, start, args.scales, args.precision, args.tileable)
    job.save_step = lambda run_dir, step, image, history: runs.save_step(run_dir, step, job.to_rgb(image), history)
    job.finish = lambda run_dir, image, history, config, status, iterations, seconds: runs.finish(
        run_dir, kept_image(job, image), history, config, job.shown, job.plotted, status, iterations, seconds)


def attach_feedforward(job, args):
    """The generator's training steps, and what it saves of them: checkpoints and sample sheets."""
    import feedforward
    import runs
    checkpoint_settings = {'tileable': args.tileable, 'output_shape': list(job.output_shape)}
    job.start = lambda network_weights: feedforward.train(
        network_weights, job.objective, job.stages, args.batch_size, args.pooling, args.precision, args.tileable,
        args.seed, args.learning_rate, job.state, preview_shape=job.output_shape)
    job.save_step = lambda run_dir, step, trainer, history: runs.save_generator_step(
        run_dir, step, trainer, history, job.source, checkpoint_settings)
    # The steps yield the trainer of their stage: the last one holds what has been learnt.
    job.finish = lambda run_dir, trainer, history, config, status, iterations, seconds: runs.finish_generator(
        run_dir, trainer, job.source, history, config, status, iterations, checkpoint_settings)


def kept_image(job, image):
    """The image to save at the end: as shown to users, or as optimised if that step fails
    (a failed run must keep its work and report its own error, not this one)."""
    if image is None:
        return None
    try:
        return job.to_rgb(image)
    except Exception:
        return image
