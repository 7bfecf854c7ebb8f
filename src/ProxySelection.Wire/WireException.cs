namespace ProxySelection.Wire;

/// <summary>The one exception type the wire layer throws for malformed input (APIs that throw; hot paths return a status).</summary>
public sealed class WireException : Exception
{
    public WireException() { }

    public WireException(string message) : base(message) { }

    public WireException(string message, Exception inner) : base(message, inner) { }

    public WireException(WireError error, int offset, string message) : base($"{message} (at offset {offset})")
    {
        Error = error;
        Offset = offset;
    }

    public WireError Error { get; }

    public int Offset { get; }
}
