namespace ProxySelection.Lab;

/// <summary>A lab operation failed: a command exited non-zero, timed out, or the kernel refused a call.</summary>
public sealed class LabException : Exception
{
    public LabException() { }

    public LabException(string message) : base(message) { }

    public LabException(string message, Exception inner) : base(message, inner) { }
}
