def train_step(net, loss_fn, optimizer, images, labels):
    """One step of training on one batch; returns the batch's loss (from before the update)."""
    logits = net.forward(images, training=True)  # (B, 10); training=True keeps what backward needs
    loss = loss_fn.forward(logits, labels)  # a float, the mean over the batch
    net.backward(loss_fn.backward())  # dL/dlogits in, every layer's grads filled on the way back
    optimizer.step()  # every parameter moves against its gradient
    return loss
