"""Datasets (CIFAR-10, image folders), stratified splits and tf.data pipelines."""
