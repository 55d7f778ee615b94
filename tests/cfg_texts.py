"""The cfg texts the tests share, in cuda-convnet's syntax: a net's two data layers and its
softmax + logistic-regression head, so a test's net spells out only the layers it is about."""


def data_layers(channels, img_size):
    """[data] (dataIdx 0, channels x img_size x img_size) and [labels] (dataIdx 1)."""
    return (f"[data]\ntype=data\ndataIdx=0\nchannels={channels}\nimgSize={img_size}\n\n"
            "[labels]\ntype=data\ndataIdx=1\n\n")


def softmax_logreg(top):
    """[probs] (a softmax of `top`) and [logprob] (cost.logreg of labels and probs)."""
    return (f"[probs]\ntype=softmax\ninputs={top}\n\n"
            "[logprob]\ntype=cost.logreg\ninputs=labels,probs\n")
