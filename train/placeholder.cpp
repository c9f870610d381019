// placeholder: train lands here
