using System.Diagnostics.CodeAnalysis;
using System.Runtime.InteropServices;

namespace ProxySelection.Wire;

/// <summary>
/// Any MPTCP option (TCP kind 30), parsed into the struct of its subtype. Switch on <see cref="Subtype"/>, then
/// read the matching accessor (<see cref="MpCapable"/>, <see cref="Dss"/>, ...); the others throw
/// <see cref="WireException"/> with <see cref="WireError.WrongSubtype"/>.
/// </summary>
[StructLayout(LayoutKind.Explicit)]
public readonly struct MptcpOption
{
    private const int ValueOffset = 8;

    [FieldOffset(0)] private readonly MptcpSubtype _subtype;
    [FieldOffset(ValueOffset)] private readonly MpCapable _capable;
    [FieldOffset(ValueOffset)] private readonly MpJoin _join;
    [FieldOffset(ValueOffset)] private readonly Dss _dss;
    [FieldOffset(ValueOffset)] private readonly AddAddr _addAddr;
    [FieldOffset(ValueOffset)] private readonly RemoveAddr _removeAddr;
    [FieldOffset(ValueOffset)] private readonly MpPrio _prio;
    [FieldOffset(ValueOffset)] private readonly MpFail _fail;
    [FieldOffset(ValueOffset)] private readonly MpFastClose _fastClose;
    [FieldOffset(ValueOffset)] private readonly MpTcpRst _tcpRst;
    [FieldOffset(ValueOffset)] private readonly MpExperimental _experimental;

    public MptcpOption(in MpCapable value) : this() => (_subtype, _capable) = (MptcpSubtype.MpCapable, value);

    public MptcpOption(in MpJoin value) : this() => (_subtype, _join) = (MptcpSubtype.MpJoin, value);

    public MptcpOption(in Dss value) : this() => (_subtype, _dss) = (MptcpSubtype.Dss, value);

    public MptcpOption(in AddAddr value) : this() => (_subtype, _addAddr) = (MptcpSubtype.AddAddr, value);

    public MptcpOption(in RemoveAddr value) : this() => (_subtype, _removeAddr) = (MptcpSubtype.RemoveAddr, value);

    public MptcpOption(in MpPrio value) : this() => (_subtype, _prio) = (MptcpSubtype.MpPrio, value);

    public MptcpOption(in MpFail value) : this() => (_subtype, _fail) = (MptcpSubtype.MpFail, value);

    public MptcpOption(in MpFastClose value) : this() => (_subtype, _fastClose) = (MptcpSubtype.MpFastClose, value);

    public MptcpOption(in MpTcpRst value) : this() => (_subtype, _tcpRst) = (MptcpSubtype.MpTcpRst, value);

    public MptcpOption(in MpExperimental value) : this() => (_subtype, _experimental) = (MptcpSubtype.MpExperimental, value);

    private MptcpOption(ReadOnlySpan<byte> option, MptcpSubtype subtype, out WireError error)
        : this()
    {
        _subtype = subtype;
        error = subtype switch
        {
            MptcpSubtype.MpCapable => MpCapable.TryParse(option, out _capable),
            MptcpSubtype.MpJoin => MpJoin.TryParse(option, out _join),
            MptcpSubtype.Dss => Dss.TryParse(option, out _dss),
            MptcpSubtype.AddAddr => AddAddr.TryParse(option, out _addAddr),
            MptcpSubtype.RemoveAddr => RemoveAddr.TryParse(option, out _removeAddr),
            MptcpSubtype.MpPrio => MpPrio.TryParse(option, out _prio),
            MptcpSubtype.MpFail => MpFail.TryParse(option, out _fail),
            MptcpSubtype.MpFastClose => MpFastClose.TryParse(option, out _fastClose),
            MptcpSubtype.MpTcpRst => MpTcpRst.TryParse(option, out _tcpRst),
            MptcpSubtype.MpExperimental => MpExperimental.TryParse(option, out _experimental),
            _ => WireError.UnknownMptcpSubtype,
        };
    }

    public MptcpSubtype Subtype => _subtype;

    /// <summary>Whole option length on the wire.</summary>
    public int Length => _subtype switch
    {
        MptcpSubtype.MpCapable => _capable.Length,
        MptcpSubtype.MpJoin => _join.Length,
        MptcpSubtype.Dss => _dss.Length,
        MptcpSubtype.AddAddr => _addAddr.Length,
        MptcpSubtype.RemoveAddr => _removeAddr.Length,
        MptcpSubtype.MpPrio => _prio.Length,
        MptcpSubtype.MpFail => _fail.Length,
        MptcpSubtype.MpFastClose => _fastClose.Length,
        MptcpSubtype.MpTcpRst => _tcpRst.Length,
        _ => _experimental.Length,
    };

    [UnscopedRef]
    public ref readonly MpCapable MpCapable => ref Check(MptcpSubtype.MpCapable, in _capable);

    [UnscopedRef]
    public ref readonly MpJoin MpJoin => ref Check(MptcpSubtype.MpJoin, in _join);

    [UnscopedRef]
    public ref readonly Dss Dss => ref Check(MptcpSubtype.Dss, in _dss);

    [UnscopedRef]
    public ref readonly AddAddr AddAddr => ref Check(MptcpSubtype.AddAddr, in _addAddr);

    [UnscopedRef]
    public ref readonly RemoveAddr RemoveAddr => ref Check(MptcpSubtype.RemoveAddr, in _removeAddr);

    [UnscopedRef]
    public ref readonly MpPrio MpPrio => ref Check(MptcpSubtype.MpPrio, in _prio);

    [UnscopedRef]
    public ref readonly MpFail MpFail => ref Check(MptcpSubtype.MpFail, in _fail);

    [UnscopedRef]
    public ref readonly MpFastClose MpFastClose => ref Check(MptcpSubtype.MpFastClose, in _fastClose);

    [UnscopedRef]
    public ref readonly MpTcpRst MpTcpRst => ref Check(MptcpSubtype.MpTcpRst, in _tcpRst);

    [UnscopedRef]
    public ref readonly MpExperimental MpExperimental => ref Check(MptcpSubtype.MpExperimental, in _experimental);

    /// <summary>
    /// Parses one MPTCP option: <paramref name="option"/> is its bytes from the kind (30) on, exactly as long as
    /// its length byte says (<see cref="TcpOptionReader.CurrentBytes"/>).
    /// </summary>
    public static WireError TryParse(ReadOnlySpan<byte> option, out MptcpOption value)
    {
        var error = MptcpCodec.CheckKindAndLength(option);
        if (error != WireError.None)
        {
            value = default;
            return error;
        }

        // Parsed straight into the union's field: no copy of the (up to 56-byte) value on the hot path.
        value = new MptcpOption(option, (MptcpSubtype)(option[2] >> 4), out error);
        if (error != WireError.None)
        {
            value = default;
        }

        return error;
    }

    /// <summary>Parses one MPTCP option; throws <see cref="WireException"/> on malformed input.</summary>
    public static MptcpOption Parse(ReadOnlySpan<byte> option)
    {
        var error = TryParse(option, out var value);
        ThrowHelper.ThrowIfError(error, 0);
        return value;
    }

    /// <summary>The subtype of an MPTCP option's bytes, without parsing the rest.</summary>
    public static WireError TryPeekSubtype(ReadOnlySpan<byte> option, out MptcpSubtype subtype)
    {
        subtype = default;
        var error = MptcpCodec.CheckKindAndLength(option);
        if (error == WireError.None)
        {
            subtype = (MptcpSubtype)(option[2] >> 4);
        }

        return error;
    }

    public WireError TryWrite(Span<byte> destination, out int written) => _subtype switch
    {
        MptcpSubtype.MpCapable => _capable.TryWrite(destination, out written),
        MptcpSubtype.MpJoin => _join.TryWrite(destination, out written),
        MptcpSubtype.Dss => _dss.TryWrite(destination, out written),
        MptcpSubtype.AddAddr => _addAddr.TryWrite(destination, out written),
        MptcpSubtype.RemoveAddr => _removeAddr.TryWrite(destination, out written),
        MptcpSubtype.MpPrio => _prio.TryWrite(destination, out written),
        MptcpSubtype.MpFail => _fail.TryWrite(destination, out written),
        MptcpSubtype.MpFastClose => _fastClose.TryWrite(destination, out written),
        MptcpSubtype.MpTcpRst => _tcpRst.TryWrite(destination, out written),
        _ => _experimental.TryWrite(destination, out written),
    };

    private ref readonly T Check<T>(MptcpSubtype expected, in T field)
    {
        if (_subtype != expected)
        {
            ThrowHelper.ThrowWireException(WireError.WrongSubtype, 2);
        }

        return ref field;
    }
}
