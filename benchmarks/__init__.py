"""The benchmark scripts: each reproduces a paper's experiment or measures speed, and writes JSON (+ PNG, and
Markdown where a table helps) to ``results/NAME/``. Run one from the folder that holds this package (a
checkout's root) as

    python -m benchmarks.NAME [options]       # python -m benchmarks.NAME --help lists them
    safe-density bench NAME [options]         # the same, also from an installed wheel

Scripts:

    demo                    the main job (``make demo``): Hopper MPC unconstrained vs LDM-constrained, and the
                            forward policy on a slippery floor bare vs LDM-wrapped
    hopper_ldm              the LDM paper's Hopper experiment: MPC toward targets ahead and behind, every
                            constraint and threshold, through Ray
    ldm_wrap_policy         an existing controller (the forward hopping policy), perturbed, bare vs wrapped
    train_hopper_behaviour  trains the shipped Hopper behaviour policies (stable-baselines3)
    hopper_gait_search      finds the scripted Hopper gaits (the fallback data) by CEM
    pets                    PETS learning curves on the MuJoCo tasks
    planner_speed           seconds per MPC action against the matrix-product floor and mbrl-lib, and the cost of
                            the plug-ins (disagreement penalty, MURAL reward) inside the planner
    fit_speed               seconds per PETS ensemble fit against mbrl-lib's ModelTrainer
    memory                  resident memory over a long run through a bounded replay buffer
    mural_tasks             MURAL vs exact CNML vs a classifier vs sparse rewards on mazes, Meta-World push
                            and Pusher (Pusher-goal-v5)
    mural_reward_shape      reward heat-maps on a 2-D maze
    mural_throughput        meta-NML reward throughput, naive vs batched
    rcad_small_data         RCAD vs ERM, label smoothing and FGSM at small data

``_common`` holds everything two scripts share; a script imports only the library and ``benchmarks._common``.
``_mbrl_lib_anchor`` is not a script of this package: ``planner_speed --anchor`` and ``fit_speed`` start it by its
path under mbrl-lib's own interpreter (mbrl-lib's import name ``mbrl`` clashes with ours).
"""
