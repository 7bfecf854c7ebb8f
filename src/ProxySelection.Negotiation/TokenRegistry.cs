namespace ProxySelection.Negotiation;

/// <summary>
/// MPTCP tokens of the connections this proxy holds. An MP_JOIN SYN is intercepted only when its token is here
/// (design §2 property 2): a join for someone else's connection passes byte for byte.
/// </summary>
public sealed class TokenRegistry
{
    private readonly Lock _lock = new();
    private readonly HashSet<uint> _tokens = [];

    public int Count
    {
        get { lock (_lock) { return _tokens.Count; } }
    }

    /// <summary>Adds a token; false when it is already held (token collision: the caller must not adopt the connection twice).</summary>
    public bool Register(uint token)
    {
        lock (_lock)
        {
            return _tokens.Add(token);
        }
    }

    public bool Unregister(uint token)
    {
        lock (_lock)
        {
            return _tokens.Remove(token);
        }
    }

    /// <summary>The tokens held now (a copy).</summary>
    public uint[] ToArray()
    {
        lock (_lock)
        {
            return [.. _tokens];
        }
    }

    public bool Contains(uint token)
    {
        lock (_lock)
        {
            return _tokens.Contains(token);
        }
    }
}
