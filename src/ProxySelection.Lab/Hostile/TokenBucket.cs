namespace ProxySelection.Lab.Hostile;

/// <summary>
/// Tokens at <see cref="Rate"/> per second, at most <see cref="Burst"/> saved up; time is the caller's elapsed time
/// since the start (no clock inside, so a test drives it with plain values).
/// </summary>
public sealed class TokenBucket
{
    private double _tokens;
    private TimeSpan _last;

    public TokenBucket(double rate, double burst)
    {
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(rate);
        ArgumentOutOfRangeException.ThrowIfLessThan(burst, 1);
        Rate = rate;
        Burst = burst;
        _tokens = 1;
    }

    public double Rate { get; }

    public double Burst { get; }

    /// <summary>Takes up to <paramref name="wanted"/> whole tokens at <paramref name="elapsed"/>; returns how many it took.</summary>
    public int Take(TimeSpan elapsed, int wanted)
    {
        if (elapsed > _last)
        {
            _tokens = Math.Min(Burst, _tokens + (elapsed - _last).TotalSeconds * Rate);
            _last = elapsed;
        }

        int taken = (int)Math.Min(wanted, Math.Floor(_tokens));
        _tokens -= taken;
        return Math.Max(0, taken);
    }

    /// <summary>How long until one token is there (zero when one is).</summary>
    public TimeSpan UntilNext() => _tokens >= 1 ? TimeSpan.Zero : TimeSpan.FromSeconds((1 - _tokens) / Rate);
}
