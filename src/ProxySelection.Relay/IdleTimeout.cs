namespace ProxySelection.Relay;

/// <summary>
/// One resettable token source per connection: every read or write pushes the deadline out with CancelAfter
/// (a timer change, no allocation), rather than a timer or a linked token per operation.
/// </summary>
internal sealed class IdleTimeout : IDisposable
{
    private readonly CancellationTokenSource _source;
    private readonly TimeSpan _timeout;

    public IdleTimeout(TimeSpan timeout, TimeProvider time)
    {
        _timeout = timeout;
        // Armed by the first Reset, when the relay starts, not at construction.
        _source = new CancellationTokenSource(Timeout.InfiniteTimeSpan, time);
    }

    public CancellationToken Token => _source.Token;

    public void Reset()
    {
        if (_timeout != Timeout.InfiniteTimeSpan)
        {
            try
            {
                _source.CancelAfter(_timeout);
            }
            catch (ObjectDisposedException)
            {
                // The connection finished while this loop was completing.
            }
        }
    }

    public void Dispose() => _source.Dispose();
}
